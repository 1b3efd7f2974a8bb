"""ABC tune text -> NoteSequence through music21, after rewriting what music21 misreads."""

from __future__ import annotations

import re
from fractions import Fraction

from melody_plugin.errors import InputFileError
from melody_plugin.io.music21_score import (
    _MODES,
    _music21,
    _pickup_quarters,
    _quiet,
    music21_module,
    score_to_note_sequence,
)

_ABC_METER = re.compile(r"(?:^|\[)M:\s*([^\]\n%]*)", re.M)


_ABC_BODY_TOKEN = re.compile(
    r'"[^"\n]*"|![^!\n]*!|\+[^+\n]*\+|\[[A-Za-z]:[^\]\n]*\]|\{[^}\n]*\}|[ZX]\d*|[Hx).uv]|\((?!\d)')


# what holds text that is not music: strings, decorations, inline fields, grace groups
_ABC_OPAQUE = re.compile(r'"[^"\n]*"|![^!\n]*!|\+[^+\n]*\+|\[[A-Za-z]:[^\]\n]*\]|\{[^}\n]*\}')


_UNCLOSED_CHORD = re.compile(r'\[(?![|\d"])[^\]|]*(?=\||$)')  # `[` of a chord (not `[|`, `[1`) with no `]`


_ABC_KEY = re.compile(r"\s*(?:[A-G][#b]?|none\b|H[Pp]\b)")  # a K: field that names a key, not only a clef


_CHANGE_MARKER = '"C"'  # a chord symbol: music21 keeps it at the next note's offset, where inline fields are lost


MAX_REST_BARS = 10_000  # a `Z` rest longer than this is refused: it is written out bar by bar


class AbcSyntaxError(InputFileError):
    """ABC that any reader could only guess at (an unclosed chord): the tune is skipped, no other reader tried."""


class _Refused(ValueError):
    """What the ABC rewrite cannot give music21 faithfully; the tune is refused with this reason."""


class _Malformed(_Refused):
    """A _Refused that no reader should guess at (becomes AbcSyntaxError)."""


def _rewrite_for_music21(token: str) -> str:
    if token[0] in '{(.)uv"':  # grace notes (dropped anyway), slurs, staccato, bowings, chord symbols and
        return ""  # annotations change no timing (chord symbols are taken out so the markers stand alone)
    return {"H": "!fermata!", "x": "z"}.get(token, token)


def _abc_field_change(field: str):
    """("M", (numerator, denominator)), ("Q", qpm) or ("K", (tonic pitch class, mode)) for a mid-tune field."""
    abcFormat, key = music21_module("abcFormat"), music21_module("key")

    if field.startswith("M:"):
        meters = abc_meters(field)
        return ("M", meters.pop()) if len(meters) == 1 else None
    if field.startswith("Q:"):
        token = abcFormat.ABCMetadata(field)
        token.preParse()
        mark = token.getMetronomeMarkObject()
        qpm = mark.getQuarterBPM() if mark is not None else None
        return ("Q", float(qpm)) if qpm and qpm > 0 else None
    if field.startswith("K:"):
        token = abcFormat.ABCMetadata(field)
        token.preParse()
        signature = token.getKeySignatureObject()
        k = signature if isinstance(signature, key.Key) else signature.asKey("major")
        return ("K", (k.tonic.pitchClass, _MODES.get(k.mode, 0)))
    return None


def _abc_unit(field: str) -> Fraction | None:
    """The note length of an `L:` field (`L:1/8` -> 1/8), None when it is not a plain, non-zero fraction."""
    m = re.fullmatch(r"L:\s*(\d+)\s*(?:/\s*(\d+))?\s*", field)
    if not m or not int(m.group(1)) or not int(m.group(2) or 1):
        return None
    return Fraction(int(m.group(1)), int(m.group(2) or 1))


def _first_voice(line: str, overlay: bool) -> tuple[str, bool]:
    """The line without its `&` overlay voices (from each `&` to the next bar line), and whether an overlay
    runs on past the line's end."""
    out, pos = [], 0
    for m in [*_ABC_OPAQUE.finditer(line), None]:
        for ch in line[pos:m.start() if m else len(line)]:
            if ch == "&":
                overlay = True
            elif ch == "|":
                overlay = False
            if not overlay or ch == ":":  # `:|` ends an overlay bar and repeats
                out.append(ch)
        if m is not None:
            if not overlay:
                out.append(m.group())
            pos = m.end()
    return "".join(out), overlay


def _blank_text(music: str) -> str:
    """A line of ABC music with strings, decorations, inline fields and grace groups as spaces (a string keeps its
    opening quote: `["Coda"` opens a variant ending, not a chord), so what is left is notes, chords and bars."""
    return _ABC_OPAQUE.sub(lambda m: ('"' if m.group()[0] == '"' else " ") + " " * (len(m.group()) - 1), music)


class _AbcRewrite:
    """One tune rewritten for music21 (see `_abc_for_music21`), line by line: what carries from line to line."""

    def __init__(self):
        self.lines, self.changes, self.note_since_marker = [], [], True
        self.meter, self.unit = None, None  # in force, for `Z` rests
        self.start_key = None  # (tonic pitch class, mode) of the K: field that ends the header
        self.overlay, self.pending = False, ""  # inside an `&` voice; music cut inside a chord, for the next line
        # music21 starts a new measure at every field line: a field inside the first bar would make it a pickup
        self.first_bar, self.first_bar_pieces = "before", 1  # "before" its first note, "open", then "closed"

    def advance(self, blanked: str) -> None:
        """Follows the first bar through music (strings and decorations blanked)."""
        for ch in blanked:
            if self.first_bar == "before" and ch in "ABCDEFGabcdefgzxZX":
                self.first_bar = "open"
            elif self.first_bar == "open" and ch == "|":
                self.first_bar = "closed"

    def split_here(self) -> None:
        """A field line goes here: music21 ends its measure."""
        self.first_bar_pieces += self.first_bar == "open"

    def header_line(self, line: str) -> None:
        if line.startswith("M:"):
            meters = abc_meters(line)
            self.meter = meters.pop() if len(meters) == 1 else None
        elif line.startswith("L:"):
            self.unit = _abc_unit(line.split("%", 1)[0].strip())
        elif line.startswith("K:"):
            # music21 files a key change written inside a bar under that bar's start: the key is taken from here
            self.start_key = _abc_field_change(line.split("%", 1)[0].strip())[1]
            if self.unit is None:  # ABC's default note length, as music21 takes it
                self.unit = Fraction(1, 16) if self.meter and Fraction(*self.meter) < Fraction(3, 4) \
                    else Fraction(1, 8)
        self.lines.append(line)

    def field(self, value: str) -> tuple[str, str]:
        """(the field line to keep, or "", the marker to put in its place, or "") for a mid-tune field."""
        if value.startswith("L:"):
            self.unit = _abc_unit(value)
            return value, ""
        if value.startswith("K:") and not _ABC_KEY.match(value[2:]):
            return "", ""
        if value.startswith("M:"):
            meters = abc_meters(value)
            self.meter = meters.pop() if len(meters) == 1 else None
        keep = value if value.startswith("K:") else ""
        change = _abc_field_change(value)
        if change is None:
            return keep, ""
        if not self.note_since_marker:
            self.changes[-1].append(change)
            return keep, ""
        self.changes.append([change])
        self.note_since_marker = False
        return keep, _CHANGE_MARKER

    def field_line(self, line: str) -> None:
        if re.match(r"[MQLK]:", line):
            keep, marker = self.field(line.split("%", 1)[0].strip())
        else:
            keep, marker = line, ""
        if keep and not keep.startswith("%"):
            self.split_here()
        self.lines += [x for x in (keep, marker) if x]  # never an empty line: that would end the tune

    def rests(self, token: str, bar: str) -> str:
        """A `Z`/`X` rest written out as whole-bar rests; `bar` is the rest of its bar."""
        if re.search(r"[A-Ga-gzx]", bar):  # notes in its bar: a typo for `z` (O'Neill's `G4 Z2|` in 3/4)
            return "z" + token[1:]
        bars = int(token[1:] or 1)
        if self.meter is None or self.unit is None:
            raise _Refused(f"a multi-bar rest ({token}) with no meter or note length in force")
        if bars > MAX_REST_BARS:
            raise _Refused(f"a rest of {bars} bars; refused")
        length = Fraction(*self.meter) / self.unit  # one bar, in units of L:
        rest = f"z{length.numerator}" + (f"/{length.denominator}" if length.denominator > 1 else "")
        return "|".join([rest] * bars)

    def music_line(self, line: str) -> None:
        music, self.overlay = _first_voice(line.split("%", 1)[0], self.overlay)
        music, self.pending = self.pending + music, ""
        blanked = _blank_text(music)
        if unclosed := _UNCLOSED_CHORD.search(blanked):
            if unclosed.end() == len(music):  # a chord wrapped onto the next line (tools wrap at 80 columns)
                self.pending = music
                return
            chord = music[unclosed.start():unclosed.end()].strip()
            raise _Malformed(f"unclosed chord {chord!r}: no ']' before the next bar line")
        out, pos = [], 0
        for m in _ABC_BODY_TOKEN.finditer(music):
            gap, token = music[pos:m.start()], m.group()
            self.note_since_marker = self.note_since_marker or bool(re.search(r"[A-Ga-gz]", gap))
            self.advance(blanked[pos:m.start()])
            out.append(gap)
            if re.match(r"\[[MQLK]:", token):
                keep, marker = self.field(token[1:-1])
                if keep:  # L:, K: work on their own line only
                    self.split_here()
                out.append(f"\n{keep}\n{marker}" if keep else marker)
            elif token[0] in "ZX":  # with the rest of its bar, strings and decorations blanked
                out.append(self.rests(token, blanked[:m.start()].rsplit("|", 1)[-1]
                                      + blanked[m.end():].split("|", 1)[0]))
                self.note_since_marker = True
            else:
                out.append(_rewrite_for_music21(token))
            self.advance(blanked[m.start():m.end()])
            pos = m.end()
        self.note_since_marker = self.note_since_marker or bool(re.search(r"[A-Ga-gz]", music[pos:]))
        self.advance(blanked[pos:])
        self.lines += [x for x in ("".join(out) + music[pos:]).split("\n") if x.strip()]


def _abc_for_music21(text: str) -> _AbcRewrite:
    """The tune rewritten for music21 (`.lines`), the meter, tempo and key changes in its body, in order
    (`.changes`), and how many of music21's measures its first bar falls into (`.first_bar_pieces`).

    Works around music21 slips that put every later note off by a note's length: it drops a note written
    with the fermata shorthand (`Hg3`) and an invisible rest (`x2`), and ignores a broken rhythm when a slur,
    staccato, bowing or grace note comes between (`a>(fe)`, `A>.B`, `A>uB`, `A>{g}B`). The long forms read right;
    what changes no timing is left out. music21 also loses every `M:`/`Q:` field after `K:` (inline `[M:3/4]` or
    on its own line): each is replaced by a marker chord symbol, and the i-th marker found in the score carries
    the i-th group of changes (fields with no note between them form one group). It ignores inline `[L:]` and
    `[K:]` fields but honours them on their own line, so they are moved there (a `K:` change gets a marker too:
    music21 applies its accidentals but records no key change; a `K:` naming only a clef is dropped, as music21
    would reset the key to C). It drops `Z` multi-bar rests: `Z4` is written out as 4 whole-bar rests of the
    meter in force. It reads `&` overlay voices one after the other: only the first voice is kept.

    Raises:
      _Refused: for a `Z` rest with no meter in force; _Malformed for an unclosed chord.
    """
    rewrite, in_body = _AbcRewrite(), False
    for line in text.splitlines():
        if not in_body:
            rewrite.header_line(line)
            in_body = line.startswith("K:")
        elif re.match(r"[A-Za-z+]:|%", line):
            rewrite.field_line(line)
        else:
            rewrite.music_line(line)
    if rewrite.pending:
        chord = rewrite.pending[_UNCLOSED_CHORD.search(_blank_text(rewrite.pending)).start():].strip()
        raise _Malformed(f"unclosed chord {chord!r}: no ']' before the tune's end")
    return rewrite


def _first_bar_pickup(score, pieces: int) -> Fraction:
    """The pickup of a tune whose first written bar music21 split into `pieces` measures (at field lines)."""
    stream = music21_module("stream")

    part = score.parts[0] if isinstance(score, stream.Score) and score.parts else score
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures or measures[0].timeSignature is None:
        return _pickup_quarters(part)
    written = Fraction(measures[pieces].offset) if pieces < len(measures) else Fraction(part.highestTime)
    bar = Fraction(measures[0].timeSignature.barDuration.quarterLength)
    return bar - written if 0 < written < bar else Fraction(0)


def abc_meters(text: str) -> set[tuple[int, int]]:
    """The meters an ABC tune writes in `M:` fields, header and inline (`C` is 4/4, `C|` is 2/2)."""
    meters = set()
    for value in _ABC_METER.findall(text):
        value = value.strip()
        if value == "C":
            meters.add((4, 4))
        elif value == "C|":
            meters.add((2, 2))
        elif m := re.fullmatch(r"\(?([\d+\s]+)\)?\s*/\s*(\d+)", value):
            meters.add((sum(int(n) for n in m.group(1).replace("+", " ").split()), int(m.group(2))))
    return meters


def abc_tune_to_note_sequence(text: str, name: str):
    """One ABC tune (its file header prepended) as a NoteSequence, read by music21.

    Raises:
      InputFileError: naming `name`, when music21 cannot read the tune or it holds no notes.
    """
    _music21()
    abcFormat, translate = music21_module("abcFormat"), music21_module("abcFormat.translate")

    if not re.search(r"^K:", text, re.M):
        raise InputFileError(name, "not an ABC tune (no K: field)")
    try:
        with _quiet():
            # an undeclared version is read as ABC 2.1 (music21 assumes 1.3, where accidentals do not carry
            # through the bar; note-seq and every modern tunebook expect that they do)
            abc_file = abcFormat.ABCFile(abcVersion=(2, 1, 0))
            rewrite = _abc_for_music21(text)
            score = translate.abcToStreamScore(abc_file.readstr("\n".join(rewrite.lines)))
        pickup = _first_bar_pickup(score, rewrite.first_bar_pieces) if rewrite.first_bar_pieces > 1 else None
        # music21 re-bars an overfull bar under a made-up meter (1/16, 5/8...); note-seq keeps the written meter
        return score_to_note_sequence(score, name, "abc", meters=abc_meters(text), changes=rewrite.changes,
                                      pickup=pickup, start_key=rewrite.start_key)
    except InputFileError:
        raise
    except _Malformed as e:
        raise AbcSyntaxError(name, str(e)) from None
    except _Refused as e:
        raise InputFileError(name, str(e)) from None
    except Exception as e:  # music21 raises its own exceptions, and IndexError/ValueError on odd input
        raise InputFileError(name, f"music21 cannot read it ({type(e).__name__}: {e})") from None

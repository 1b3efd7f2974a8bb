"""ABC tune / MusicXML -> music21 score -> NoteSequence: the optional reader, first choice when installed.

Step of the flow: files -> `NoteSequence`, beside `midi_io` (which tries this reader first, as note-seq misreads
ties across bar lines, pickups and part names, and note-seq for what it fails on). Entry points: `available()`,
`abc_tune_to_note_sequence(text, name)`, `musicxml_to_note_sequence(xml, name)` and
`score_to_note_sequence(score, name)`. music21 is an extra (`pip install "melody_plugin[music21]"`), imported only
when a file needs it.

The NoteSequence is the one note-seq's readers make: onsets are music21's exact fractional quarter lengths (an
eighth-note triplet is 1/3 quarter) converted to seconds through the tempo marks; time signatures, keys, tempos
(with ABC `M:`/`Q:`/`K:` changes inside a tune, which music21 itself loses), title and composer are kept; each part
is an instrument; tied notes are merged; grace notes are dropped. Repeats and ABC `P:` part orders are not expanded:
every written bar sounds once, first and second endings in turn, as note-seq's ABC reader does. ABC that music21
would misread is rewritten first (inline `[L:]`/`[K:]`, `Z` multi-bar rests; see `_abc_for_music21`); of `&`
overlay voices only the first is read, and a tune with an unclosed chord is refused (`AbcSyntaxError`).
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.util
import io
import re
import warnings
import xml.etree.ElementTree as ET
from fractions import Fraction

from melody_plugin.errors import InputFileError

INSTALL_HINT = 'pip install "melody_plugin[music21]"'
MAX_NOTES = 200_000  # as midi_io.MAX_NOTES
MAX_QUARTERS = 200_000  # as midi_io.MAX_QUARTERS
DEFAULT_QPM = 120.0  # note-seq's, when a tune has no Q: field
STANDARD_PPQ = 220  # note-seq's ticks_per_quarter for score-based sequences
DEFAULT_VELOCITY = 64

_MODES = {"major": 0, "ionian": 0, "minor": 1, "aeolian": 1, "mixolydian": 3, "dorian": 4, "phrygian": 5,
          "lydian": 6, "locrian": 7}
_ABC_METER = re.compile(r"(?:^|\[)M:\s*([^\]\n%]*)", re.M)


def available() -> bool:
    """Whether music21 is installed (without importing it: that takes most of a second)."""
    return importlib.util.find_spec("music21") is not None


def _music21():
    if not available():
        raise InputFileError("music21", f"the music21 reader is not installed ({INSTALL_HINT})")
    import music21

    return music21


@contextlib.contextmanager
def _quiet():
    """music21 writes its warnings ("assuming C") to stderr; a skipped tune is reported by the caller instead."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


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
    from music21 import abcFormat, key

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
    from music21 import stream

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
    from music21 import abcFormat
    from music21.abcFormat import translate

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


def musicxml_to_note_sequence(xml: bytes, name: str):
    """MusicXML bytes (already checked for entity and zip bombs by midi_io) as a NoteSequence, read by music21.

    Raises:
      InputFileError: naming `name`, when the XML is not a readable partwise score or holds no notes.
    """
    if xml.count(b"<note") > MAX_NOTES:
        raise InputFileError(name, f"more than {MAX_NOTES} notes; refused")
    _music21()
    from music21.musicxml import xmlToM21

    try:
        root = ET.fromstring(xml)  # expat honours the encoding the XML declares
    except ET.ParseError as e:
        raise InputFileError(name, f"unreadable MusicXML ({e})") from None
    if root.tag != "score-partwise":
        raise InputFileError(name, f"music21 reads only partwise MusicXML (the root is <{root.tag}>)")
    try:
        importer = xmlToM21.MusicXMLImporter()
        with _quiet():
            importer.xmlRootToScore(root, importer.stream)
        return score_to_note_sequence(importer.stream, name, "musicxml")
    except InputFileError:
        raise
    except Exception as e:
        raise InputFileError(name, f"music21 cannot read it ({type(e).__name__}: {e})") from None


class _TempoMap:
    """Quarter notes -> seconds through (quarter, qpm) marks, exactly (Fractions until the end)."""

    def __init__(self, marks):
        self.marks = sorted(marks) or [(Fraction(0), Fraction(DEFAULT_QPM))]
        if self.marks[0][0] > 0:
            self.marks.insert(0, (Fraction(0), self.marks[0][1]))
        self.quarters = [q for q, _ in self.marks]
        self.starts = [Fraction(0)]
        for (q0, qpm), (q1, _) in zip(self.marks, self.marks[1:]):
            self.starts.append(self.starts[-1] + (q1 - q0) * 60 / qpm)

    def seconds(self, quarters) -> float:
        quarters = Fraction(quarters)
        i = max(bisect.bisect_right(self.quarters, quarters) - 1, 0)
        q, qpm = self.marks[i]
        return float(self.starts[i] + (quarters - q) * 60 / qpm)


def _pickup_quarters(part) -> Fraction:
    """How much of the first bar a pickup leaves out, so bar lines fall where the score puts them."""
    from music21 import stream

    first = part.getElementsByClass(stream.Measure).first()
    return Fraction(first.paddingLeft) if first is not None and first.paddingLeft else Fraction(0)


def score_to_note_sequence(score, name: str, source: str = "musicxml", meters=None, changes=None, pickup=None,
                           start_key=None):
    """A music21 score as a NoteSequence (see the module docstring for what is kept).

    Args:
      score: a music21 `Score` (or a single `Part`/`Stream`).
      name: the sequence's filename, also used in error messages.
      source: "abc" or "musicxml", recorded in `source_info`.
      meters: when given, only time signatures with these (numerator, denominator) are kept.
      changes: from `_abc_for_music21`: the meter, tempo and key changes its marker chord symbols stand for.
      pickup: quarters of rest before the first note, when not the first measure's padding (music21's pickup).
      start_key: (tonic pitch class, mode) at the start; with it, music21's key signatures are not used (the
        keys are this one and the changes').

    Raises:
      InputFileError: when the score holds no pitched note, or more notes or quarters than the limits.
    """
    from music21 import chord, key, meter, note, stream
    from melody_plugin.protos import music_pb2

    music_pb2 = music_pb2()
    parts = list(score.parts) if isinstance(score, stream.Score) and score.parts else [score]
    shift = _pickup_quarters(parts[0]) if pickup is None else Fraction(pickup)

    def at(q) -> Fraction:  # a score offset -> quarters from the start of the first full-length bar
        return Fraction(q) + shift if q else Fraction(0)

    ns = music_pb2.NoteSequence()
    ns.filename = name
    ns.ticks_per_quarter = STANDARD_PPQ
    ns.source_info.source_type = music_pb2.NoteSequence.SourceInfo.SCORE_BASED
    ns.source_info.parser = music_pb2.NoteSequence.SourceInfo.MUSIC21
    ns.source_info.encoding_type = (music_pb2.NoteSequence.SourceInfo.ABC if source == "abc"
                                    else music_pb2.NoteSequence.SourceInfo.MUSIC_XML)
    if score.metadata is not None:
        # <work-title>, else <movement-title> (many exporters write only the latter)
        title = score.metadata.title or score.metadata.movementName
        if title:
            ns.sequence_metadata.title = str(title)
        if score.metadata.composer:
            ns.sequence_metadata.composers.append(str(score.metadata.composer))

    # (quarters, (numerator, denominator)), (quarters, qpm), (quarters, (tonic pitch class, mode))
    meter_changes, tempo_changes, key_changes = [], [], []
    if changes:
        from music21 import harmony

        symbols = sorted(at(cs.getOffsetInHierarchy(parts[0]))
                         for cs in parts[0].recurse().getElementsByClass(harmony.ChordSymbol))
        if len(parts) > 1 and len(symbols) != len(changes):
            symbols = []  # markers spread over several voices: which is which is unknown, so none is used
        for q, group in zip(symbols, changes):  # a marker after the last note is lost: nothing follows it
            for kind, value in group:
                {"M": meter_changes, "Q": tempo_changes, "K": key_changes}[kind].append((q, value))

    marks = []
    for start, _, mark in score.metronomeMarkBoundaries():
        qpm = mark.getQuarterBPM()
        if qpm and qpm > 0:
            marks.append((at(start), Fraction(qpm)))
    marks = [m for m in marks if m[0] not in {q for q, _ in tempo_changes}]
    marks += [(q, Fraction(qpm)) for q, qpm in tempo_changes]
    tempo_map = _TempoMap(marks)
    for q, qpm in tempo_map.marks:
        ns.tempos.add(time=tempo_map.seconds(q), qpm=float(qpm))

    signatures = [(at(ts.getOffsetInHierarchy(parts[0])), (ts.numerator, ts.denominator))
                  for ts in parts[0].recurse().getElementsByClass(meter.TimeSignature)]
    if meter_changes:
        # music21 never saw these changes: its later signatures come from re-barring under the wrong meter
        signatures = [s for s in signatures if s[0] == 0][:1] + meter_changes
    last = None
    for q, value in sorted(signatures, key=lambda s: s[0]):
        if (meters is not None and value not in meters) or value == last:
            continue
        ns.time_signatures.add(time=tempo_map.seconds(q), numerator=value[0], denominator=value[1])
        last = value
    keys = [(Fraction(0), start_key)] if start_key is not None else []
    for ks in parts[0].recurse().getElementsByClass(key.KeySignature) if start_key is None else ():
        k = ks if isinstance(ks, key.Key) else ks.asKey("major")
        keys.append((at(ks.getOffsetInHierarchy(parts[0])), (k.tonic.pitchClass, _MODES.get(k.mode, 0))))
    keys = dict(sorted(keys + key_changes, key=lambda k: k[0]))  # a change at the start replaces the start key
    last = None
    for q, value in keys.items():
        if value != last:
            ns.key_signatures.add(time=tempo_map.seconds(q), key=value[0], mode=value[1])
            last = value

    end = Fraction(0)
    for index, part in enumerate(parts):
        instrument = part.getInstrument(returnDefault=False) if hasattr(part, "getInstrument") else None
        program = instrument.midiProgram if instrument is not None and instrument.midiProgram is not None else 0
        is_drum = instrument is not None and instrument.midiChannel == 9
        ns.instrument_infos.add(instrument=index, name=str(getattr(part, "partName", "") or ""))
        events, tied = [], {}  # [start, end, pitch, velocity, is_drum], quarters; pitch -> event a tie carries on
        for element in part.flatten().notes:  # ties merged here: music21's stripTies deep-copies the score
            duration = Fraction(element.quarterLength)
            if duration <= 0 or element.duration.isGrace:
                continue  # grace notes take no time: note-seq's readers drop them too
            start = Fraction(element.offset) + shift
            end = max(end, start + duration)
            velocity = element.volume.velocity or DEFAULT_VELOCITY
            for n in element.notes if isinstance(element, chord.ChordBase) else (element,):
                # unpitched percussion keeps its staff position as a drum note: the melody step reports
                # "drums only" rather than "no notes"
                drum = isinstance(n, note.Unpitched)
                pitch, tie = (n.displayPitch() if drum else n.pitch).midi, n.tie or element.tie
                if not 0 <= pitch <= 127:
                    continue
                held = tied.pop(pitch, None)
                if held is not None and tie is not None and tie.type in ("stop", "continue") \
                        and events[held][1] == start:
                    events[held][1] = start + duration
                else:
                    events.append([start, start + duration, pitch, velocity, drum or is_drum])
                    held = len(events) - 1
                if tie is not None and tie.type in ("start", "continue"):
                    tied[pitch] = held
        if len(ns.notes) + len(events) > MAX_NOTES:
            raise InputFileError(name, f"more than {MAX_NOTES} notes; refused")
        for start, stop, pitch, velocity, drum in events:
            written = (stop - start) / 4  # of a whole note, as note-seq's score readers record it
            ns.notes.add(pitch=pitch, velocity=int(velocity), start_time=tempo_map.seconds(start),
                         end_time=tempo_map.seconds(stop), numerator=written.numerator,
                         denominator=written.denominator, instrument=index, program=program, is_drum=drum,
                         part=index)
    if end > MAX_QUARTERS:
        raise InputFileError(name, f"{float(end):.0f} quarter notes exceed the length limit; refused")
    if not ns.notes:
        raise InputFileError(name, "no notes")
    # a final rest is music: the sequence lasts to the score's end
    ns.total_time = tempo_map.seconds(max(end, Fraction(score.highestTime) + shift))
    return ns

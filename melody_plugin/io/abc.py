"""ABC tunebook bytes -> one NoteSequence per tune: charset, tune splitting, time limits, music21 or note-seq."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

from melody_plugin.errors import InputFileError
from melody_plugin.io import music21_abc, music21_score
from melody_plugin.runtime.guarded import READ_TIMEOUT_S, printable, time_limit
from melody_plugin.runtime.quiet import import_note_seq, quiet_third_party

ABC_SECONDS_PER_TUNE = 1.0  # a tunebook's time limit grows with its tunes


MAX_ABC_TUNES = 5_000


MAX_ABC_BOOK_SECONDS = 120.0  # the whole tunebook, however many tunes: a junk file must not run for an hour


_ABC_CHARSET = re.compile(rb"^(?:%%?|I:)[ \t]*abc-charset[ \t]+([A-Za-z0-9_.:-]+)", re.M)


def abc_bytes_to_text(path, data: bytes) -> tuple[str, list[str]]:
    """Decodes an ABC file: the charset it declares (`%abc-charset`, `I:abc-charset`), else UTF-8, else
    Windows-1252 (a superset of Latin-1). Returns the text and what was noticed."""
    declared = _ABC_CHARSET.search(data)
    if declared:
        name = declared.group(1).decode("ascii")
        try:
            return data.decode(name), []
        except LookupError:
            warning = f"unknown abc-charset {name!r} ignored"
        except UnicodeDecodeError as e:
            return data.decode(name, "replace"), [f"bytes not valid in its abc-charset {name} replaced ({e.reason})"]
    else:
        warning = ""
    warnings = [warning] if warning else []
    try:
        return data.decode("utf-8-sig"), warnings
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), warnings + ["not UTF-8 and no abc-charset: read as Windows-1252/Latin-1"]
    except UnicodeDecodeError:
        return data.decode("latin-1"), warnings + ["not UTF-8 and no abc-charset: read as Latin-1"]


@dataclasses.dataclass(frozen=True)
class AbcTune:
    """One tune of a tunebook: its `X:` number (None without one), first `T:` title and lines, header first."""

    number: str | None
    title: str
    lines: tuple[str, ...]

    @property
    def label(self) -> str:
        """`X:3 'Title'`, as reports name a tune."""
        number = f"X:{self.number}" if self.number is not None else "the tune"
        return f"{number} {self.title!r}" if self.title else number


def split_abc_tunebook(text: str) -> list[AbcTune]:
    """Splits a tunebook into tunes: a tune runs from its `X:` line to the next `X:` line (not to the next empty
    line, as the standard has it: a missing blank line would otherwise swallow the next tune); trailing free
    text after a tune's blank line is dropped. The file header (the first block, when it has no `X:`) is put
    before every tune. A file without any `X:` line is one tune."""
    lines = [line.rstrip() for line in text.splitlines()]
    if not any(line.startswith("X:") for line in lines):
        body = tuple(line for line in lines if line.strip())
        title = next((line[2:].strip() for line in body if line.startswith("T:")), "")
        return [AbcTune(None, title, body)] if body else []
    header, start = [], 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    while start < len(lines) and lines[start].strip() and not lines[start].startswith("X:"):
        if re.match(r"[A-Za-z]:|%", lines[start]):  # fields, directives and comments; not free text
            header.append(lines[start])
        start += 1
    blocks, current = [], None
    for line in lines[start:]:
        if line.startswith("X:"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
    tunes = []
    for block in blocks:
        # a blank line ends the tune; after it, only a field or music right before the next X: would be
        # part of it, which the standard does not allow: free text (liner notes) is left out
        end = next((i for i, line in enumerate(block) if not line.strip()), len(block))
        body = block[:end]
        title = next((x[2:].strip() for x in body if x.startswith("T:")), "")
        tunes.append(AbcTune(body[0][2:].strip(), title, tuple(header + body)))
    return tunes


def _abc_tune_with_note_seq(tune: AbcTune):
    abc_parser = import_note_seq("abc_parser")

    tunes, exceptions = abc_parser.parse_abc_tunebook("\n".join(tune.lines))
    if exceptions:
        raise exceptions[0]
    if len(tunes) != 1:
        raise ValueError("no tune")
    return next(iter(tunes.values()))


def _read_abc_tune(tune: AbcTune, name: str, reader: str, use_music21: bool, seconds):
    """(NoteSequence or None, who read it: "music21"/"note_seq"/"", music21's refusal or why neither read it).

    With music21 installed, `auto` tries it first and note-seq for what music21 fails on, a time-out included
    (see `read_music_file` for why). Each reader gets `seconds()` (the time it may still take) when it starts.
    """

    if tune.number is not None and not tune.number.isdigit():  # both readers int() the X: field; the label
        tune = dataclasses.replace(tune, lines=tuple(  # (X:A7) stays in the name and reports
            "X:0" if line.startswith("X:") else line for line in tune.lines))
    refusals = []
    order = ["music21"] if reader == "music21" else ["note_seq"] if not use_music21 else ["music21", "note_seq"]
    for who in order:
        if who == "note_seq":  # imported before the clock starts: the first import takes a second or two
            import_note_seq("abc_parser")
        left = seconds()
        if left <= 0:
            refusals.append("not read: the file's time was used up")
            break
        try:
            with time_limit(left, name):
                if who == "music21":
                    return music21_abc.abc_tune_to_note_sequence("\n".join(tune.lines), name), who, ""
                return _abc_tune_with_note_seq(tune), who, refusals[0] if refusals else ""
        except music21_abc.AbcSyntaxError as e:  # an unclosed chord...: note-seq would guess where music21 refuses
            return None, "", e.reason
        except InputFileError as e:  # a time-out included
            refusals.append(e.reason)
        except Exception as e:  # note-seq's ABCParseError says what it refuses; anything else needs its type
            refusals.append(str(e) if type(e).__module__ == "note_seq.abc_parser" else f"{type(e).__name__}: {e}")
    if len(refusals) > 1:
        refusals = [f"music21: {refusals[0]}; note-seq: {refusals[1]}"]
    return None, "", refusals[0]


def _read_abc(path, data: bytes, reader: str = "auto", timeout_s: float = READ_TIMEOUT_S, tune: str | None = None):
    """An ABC tunebook, tune by tune: each tune is read by music21 when it is installed (note-seq for what
    music21 fails on), else by note-seq; a tune neither reads is skipped with its number and reason.

    Each reader of a tune gets `timeout_s`; the whole file `timeout_s` plus ABC_SECONDS_PER_TUNE per tune (music21
    takes about 0.2 s a tune, and a tunebook holds hundreds), at most MAX_ABC_BOOK_SECONDS: the tunes left then
    are reported as not read. `tune` (an X: number, or its name such as "4 (2)") reads that tune alone.
    """

    quiet_third_party()
    text, warnings = abc_bytes_to_text(path, data)
    tunes = split_abc_tunebook(text)
    if not tunes:
        raise InputFileError(path, "no ABC tune in the file")
    if len(tunes) > MAX_ABC_TUNES:
        raise InputFileError(path, f"{len(tunes)} tunes, over the limit of {MAX_ABC_TUNES}; split the tunebook")
    use_music21 = reader != "note_seq" and music21_score.available()
    named, seen = [], {}
    for abc_tune in tunes:
        name = f"{path}#X:{printable(abc_tune.number)}" if abc_tune.number is not None else str(path)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # two tunes with one X: number must still be told apart in reports and sidecars
            if tune is None:
                warnings.append(f"ABC tune {printable(abc_tune.label)} repeats an earlier X: number: named "
                                f"{Path(name).name} ({seen[name]})")
            name = f"{name} ({seen[name]})"
        named.append((abc_tune, name))
    if tune is not None:  # one tune asked for: the others are neither read nor reported
        chosen = [(t, n) for t, n in named if n == f"{path}#X:{tune}"]
        if not chosen:
            numbers = ", ".join(n[len(str(path)) + 1:] or "one without X:" for _, n in named[:20])
            numbers += ", ..." if len(named) > 20 else ""
            raise InputFileError(path, f"no tune X:{printable(tune)} in the file (its tunes: {numbers})")
        named = chosen
    budget_s = min(timeout_s + ABC_SECONDS_PER_TUNE * len(named), MAX_ABC_BOOK_SECONDS)
    deadline = time.monotonic() + budget_s
    sequences, skipped, fallbacks, timed_out = [], [], [], 0
    for abc_tune, name in named:
        if deadline - time.monotonic() <= 0:
            timed_out += 1
            skipped.append((abc_tune, f"not read: the file's {budget_s:g} s were used up"))
            continue
        ns, read_by, refusal = _read_abc_tune(abc_tune, name, reader, use_music21,
                                              lambda: min(timeout_s, deadline - time.monotonic()))
        if ns is None:
            skipped.append((abc_tune, refusal))
            continue
        if read_by == "note_seq" and use_music21:
            fallbacks.append((abc_tune, refusal))
        ns.filename = name
        if abc_tune.number is not None and abc_tune.number.isdigit():
            ns.reference_number = int(abc_tune.number)
        if abc_tune.title and not ns.sequence_metadata.title:
            ns.sequence_metadata.title = abc_tune.title
        sequences.append(ns)
    hint = (f"the music21 reader may read {'them' if len(skipped) > 1 else 'it'}: {music21_score.INSTALL_HINT}"
            if skipped and reader == "auto" and not use_music21 else "")
    if timed_out:
        warnings.append(f"time limit of {budget_s:g} s for the file reached after {len(named) - timed_out} of "
                        f"{len(named)} tunes ({len(sequences)} read); {timed_out} not tried (split the tunebook "
                        "to read them all)")
    if not sequences:
        # the tune's name in parentheses: reports count alike reasons together without them
        first, reason = skipped[0]
        if tune is not None:
            raise InputFileError(path, f"tune {printable(first.label)} is not readable: {printable(reason, 200)}"
                                 + (f"; {hint}" if hint else ""))
        if timed_out:
            reason = f"{warnings[-1]}; the first: {reason}"
        which = printable(first.label) + (f", and {len(skipped) - 1} more tunes" if len(skipped) > 1 else "")
        raise InputFileError(path, f"no readable ABC tune: {printable(reason, 200)} ({which})"
                             + (f"; {hint}" if hint else ""))
    if fallbacks:  # each with music21's reason, shortened: the whole of it is one --music_reader=music21 away
        labels = "; ".join(f"X:{printable(t.number or '', 20)} ({printable(why, 80)})" for t, why in fallbacks[:10])
        warnings.append(f"note-seq read {len(fallbacks)} tune(s) music21 fails on: {labels}"
                        + ("; ..." if len(fallbacks) > 10 else ""))
    warnings += [f"ABC tune {printable(t.label)} skipped: {printable(reason, 200)}" for t, reason in skipped[:50]]
    if len(skipped) > 50:
        warnings.append(f"... and {len(skipped) - 50} more tunes skipped")
    if hint:
        warnings.append(f"{len(skipped)} tune(s) skipped; {hint}")
    return sequences, warnings

"""MusicXML and .mxl bytes -> NoteSequence: bomb checks, bounded unpacking, then music21 or note-seq."""

from __future__ import annotations

import copy
import io
import re
import zipfile
import zlib
from pathlib import Path
from xml.parsers import expat

from melody_plugin.errors import InputFileError
from melody_plugin.io import music21_score
from melody_plugin.runtime.guarded import READ_TIMEOUT_S, time_limit
from melody_plugin.runtime.quiet import import_note_seq, quiet_third_party

MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024  # for .mxl archives


class _PrologEnd(Exception):
    """The root element began: no entity can be declared after it."""


def _check_xml_bytes(path, xml: bytes) -> None:
    """Refuses XML that declares entities (a "billion laughs" bomb expands them at parse time).

    Entities can only be declared in the DOCTYPE, which comes before the root element: expat reads the prolog,
    however long (a comment of any size may come first), in the encoding the XML declares, and stops at the root.
    """

    def declared(*args):
        raise InputFileError(path, "XML entity declarations are not accepted (possible entity bomb)")

    def root(*args):
        raise _PrologEnd

    parser = expat.ParserCreate()
    parser.EntityDeclHandler = declared
    parser.UnparsedEntityDeclHandler = declared
    parser.StartElementHandler = root
    try:
        for start in range(0, len(xml), 65536):  # fed in pieces: a score stops at its root, early
            parser.Parse(xml[start:start + 65536], False)
        parser.Parse(b"", True)
    except _PrologEnd:
        pass
    except expat.ExpatError as e:  # both readers parse with expat too and would fail the same way
        raise InputFileError(path, f"unreadable MusicXML ({expat.ErrorString(e.code)}: line {e.lineno}, "
                                   f"column {e.offset})") from None


_UNPACK_PIECE = 65536


def _unpack_limited(path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """One member of an archive, decompressed in pieces and refused as soon as it passes `budget` bytes.

    The sizes in a zip's headers are the archive's word, not the data's: zipfile trusts the declared size only
    after decompressing in one piece (a 1 GiB payload declared as 1000 bytes took 2 GB of memory before its CRC
    failed). Here the member is opened as if it declared a little more than the budget, and the actual bytes are
    counted as they come.
    """
    probe = copy.copy(info)
    # zipfile stops (and checks the CRC) at the declared size: past the budget by more than a read can bring
    probe.file_size = budget + 2 * _UNPACK_PIECE
    chunks, size = [], 0
    with zf.open(probe) as member:
        while chunk := member.read(_UNPACK_PIECE):
            size += len(chunk)
            if size > budget:
                raise InputFileError(path, f"archive unpacks to more than {MAX_UNCOMPRESSED_BYTES} bytes, over "
                                           f"the limit (zip bomb? {info.filename} declares {info.file_size})")
            chunks.append(chunk)
    if size != info.file_size:
        raise InputFileError(path, f"corrupt .mxl archive ({info.filename} declares {info.file_size} bytes and "
                                   f"holds {size})")
    return b"".join(chunks)


def _musicxml_score_bytes(path, data: bytes) -> bytes:
    """The score's XML (unpacked from an .mxl archive), refused if it declares entities or unpacks too big."""
    if data[:2] != b"PK":
        _check_xml_bytes(path, data)
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(info.file_size for info in zf.infolist())
            if total > MAX_UNCOMPRESSED_BYTES:
                raise InputFileError(path, f"archive unpacks to {total} bytes, over the limit (zip bomb?)")
            scores, left = {}, MAX_UNCOMPRESSED_BYTES
            for info in zf.infolist():
                if info.filename.lower().endswith((".xml", ".musicxml")):
                    scores[info.filename] = _unpack_limited(path, zf, info, left)
                    left -= len(scores[info.filename])
    except (zipfile.BadZipFile, NotImplementedError, EOFError, zlib.error, RuntimeError) as e:
        # also an unknown compression method, data cut short, an encrypted member (RuntimeError)
        raise InputFileError(path, f"corrupt .mxl archive ({type(e).__name__}: {e})") from None
    # META-INF/container.xml names the score; without it, the first XML file outside META-INF is the score (not
    # macOS's AppleDouble companions, __MACOSX/._name.xml, which are binary). Only the score is parsed, and checked.
    root = re.search(rb'full-path="([^"]+)"', scores.get("META-INF/container.xml", b""))
    names = [n for n in scores if not n.startswith(("META-INF/", "__MACOSX/")) and not Path(n).name.startswith("._")]
    name = root.group(1).decode("utf-8", "replace") if root else (names[0] if names else "")
    if name not in scores:
        raise InputFileError(path, "the .mxl archive holds no MusicXML score")
    _check_xml_bytes(path, scores[name])
    return scores[name]


def _read_musicxml(path, data: bytes, reader: str = "auto", timeout_s: float = READ_TIMEOUT_S):
    """music21 first when installed (see `read_music_file`), note-seq for what it fails on or alone.

    Each reader gets `timeout_s`: in `auto`, a score music21 runs out of time on (a long one on a busy machine)
    still goes to note-seq, which reads most scores faster.
    """

    use_music21 = reader == "music21" or (reader == "auto" and music21_score.available())
    refusal = ""
    with time_limit(timeout_s, path):
        xml = _musicxml_score_bytes(path, data)
        if use_music21:
            try:
                return [music21_score.musicxml_to_note_sequence(xml, str(path))], []
            except InputFileError as e:  # a time-out included
                if reader == "music21":
                    raise InputFileError(path, e.reason) from None
                refusal = e.reason
    quiet_third_party()
    musicxml_reader = import_note_seq("musicxml_reader")

    try:
        with time_limit(timeout_s, path):
            ns = musicxml_reader.musicxml_file_to_sequence_proto(str(path))
    except InputFileError as e:
        if not refusal:
            raise
        raise InputFileError(path, f"music21: {refusal}; note-seq: {e.reason}") from None
    except Exception as e:
        reason = f"unreadable MusicXML ({type(e).__name__}: {e})"
        if refusal:
            raise InputFileError(path, f"music21: {refusal}; note-seq: {reason}") from None
        if reader == "auto":
            reason += f"; the music21 reader may read it: {music21_score.INSTALL_HINT}"
        raise InputFileError(path, reason) from None
    return [ns], [f"read by note-seq (music21: {refusal})"] if refusal else []

"""NoteSequence TFRecords (Magenta's `convert_dir_to_note_sequences` format), read and written."""

from __future__ import annotations

from melody_plugin.errors import InputFileError
from melody_plugin.io import protos
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import import_tensorflow


def read_note_sequence_tfrecord(path):
    """Yields the NoteSequences of a TFRecord file as written by Magenta's convert_dir_to_note_sequences."""
    music_pb2 = protos.music_pb2()
    tf = import_tensorflow()

    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        try:
            yield music_pb2.NoteSequence.FromString(record)
        except Exception as e:
            raise InputFileError(path, f"record is not a NoteSequence ({type(e).__name__})") from None


def write_note_sequence_tfrecord(sequences, path) -> None:
    """Writes NoteSequences as a TFRecord (Magenta's format), atomically."""
    tf = import_tensorflow()


    with atomic.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for ns in sequences:
                writer.write(ns.SerializeToString())

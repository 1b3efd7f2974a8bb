"""Files <-> NoteSequences: MIDI, MusicXML, ABC and TFRecords, read with guards and written atomically."""

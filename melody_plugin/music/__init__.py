"""NoteSequences <-> monophonic melodies: tempo map, meter splits, grid, track choice, key."""

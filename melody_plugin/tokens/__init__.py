"""Melodies <-> token ids, and ids <-> TFRecords and tf.data batches."""

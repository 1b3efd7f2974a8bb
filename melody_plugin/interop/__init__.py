"""Magenta's face of the plugin: pipeline units, the dataset graph, and the sequence generator."""

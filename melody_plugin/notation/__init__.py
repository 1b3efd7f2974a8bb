"""Melody -> sheet music: ABC text (abc_out), MusicXML (musicxml_out) and engraved SVG/PNG (score, via verovio).

layout.py decides bars, ties, tuplets, beams and spelling once; the writers print it. Nothing here is imported by
`melody_generate` unless `--format` or `--render=score` asks for it.
"""

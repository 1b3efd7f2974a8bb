"""Install melody_plugin: `pip install .` (add `[test]` for the test tools)."""

from setuptools import find_packages, setup

setup(
    name="melody_plugin",
    version="0.1.0",
    description="Train small LSTM models on your melodies and continue a melody: MIDI in, MIDI out.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # the package and its sub-packages (one per step of the flow), and the presets as melody_plugin.configs
    packages=find_packages(include=["melody_plugin", "melody_plugin.*"]) + ["melody_plugin.configs"],
    # The built-in presets live in the top-level configs/ folder and are installed as a package.
    package_dir={"melody_plugin": "melody_plugin", "melody_plugin.configs": "configs"},
    package_data={
        "melody_plugin": ["data/corpus/*.mid", "data/examples/*.mid", "data/default_model/*"],
        "melody_plugin.configs": ["*.toml"],
        "melody_plugin.studio": ["static/*"],  # the page: HTML, CSS, JavaScript (no network at run time)
    },
    include_package_data=False,
    install_requires=[
        # Ranges checked together on a fresh Python 3.11 (TF 2.21 / Keras 3.15 / note-seq 0.0.5 / protobuf 7).
        "tensorflow>=2.16,<2.23",
        "keras>=3.3,<4",
        "tensorboard>=2.16,<2.23",  # tf.summary.scalar needs it; TF 2.21 no longer pulls it in
        "note-seq>=0.0.5,<0.1",
        "pretty_midi>=0.2.10,<0.3",
        "mido>=1.3,<2",
        "numpy>=1.26,<3",
        "absl-py>=2.0,<3",
        "matplotlib>=3.7,<4",
        "tqdm>=4.60,<5",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.4"],
        # reads the ABC and MusicXML note-seq refuses (tuplets, parts, variant endings, grace notes...)
        "music21": ["music21>=9.1,<11"],
        # What Magenta 2.1.4's Python code needs to import here (tests/test_interop_magenta.py, the pipelines in
        # Magenta's DAGs). Magenta itself pins packages that do not install on Python 3.11, so it goes in next,
        # without its dependencies: pip install --no-deps magenta==2.1.4 (see .ci/run).
        "magenta": ["tensorflow-probability==0.25.0", "tf-keras==2.21.0", "dm-tree", "tf-slim==1.1.0"],
        # --render=score: verovio engraves the MusicXML we write; cairosvg turns its SVG into PNG (needs libcairo)
        "notation": ["verovio>=4.3,<7", "cairosvg>=2.7,<3"],
        # melody_studio: the page's server, verovio for its sheet music, and music21 so that a dropped ABC tune with a
        # pickup or triplets reads right (note-seq alone shifts every bar line of a pickup, without a word)
        "studio": ["starlette>=0.37,<2", "uvicorn>=0.29,<1", "verovio>=4.3,<7", "music21>=9.1,<11"],
        # the studio's browser tests: Selenium drives Debian's chromium + chromium-driver (apt-get, see .ci/run)
        "browser": ["selenium>=4.20,<5"],
    },
    entry_points={
        "console_scripts": [
            "melody_create_dataset=melody_plugin.cli.melody_create_dataset:console_entry_point",
            "melody_train=melody_plugin.cli.melody_train:console_entry_point",
            "melody_evaluate=melody_plugin.cli.melody_evaluate:console_entry_point",
            "melody_generate=melody_plugin.cli.melody_generate:console_entry_point",
            "melody_export=melody_plugin.cli.melody_export:console_entry_point",
            "melody_studio=melody_plugin.cli.melody_studio:console_entry_point",
        ],
    },
)

"""Config registry: lookups, --hparams, plugin entry points, and configs found by a non-editable install."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest
from conftest import ROOT, run_cli

from melody_plugin.errors import ConfigError
from melody_plugin.model import registry
from melody_plugin.model.registry import ModelConfig


def test_builtin_configs_are_registered_with_the_tutorial_defaults():
    assert {"char_lstm", "folk_lstm"} <= set(registry.list_configs())
    c = registry.get_config("char_lstm")
    assert (c.rnn_layer_sizes, c.dropout_rate, c.learning_rate, c.window_size, c.batch_size) == (
        (64, 64, 64), 0.1, 1e-3, 8, 16)
    assert c.clip_norm > 0


def test_unknown_config_lists_known_names():
    with pytest.raises(ConfigError, match="unknown config 'nope'; known configs: .*char_lstm.*folk_lstm"):
        registry.get_config("nope")


def test_hparams_override_by_field_type_without_touching_the_default():
    base = registry.get_config("char_lstm")
    c = registry.with_hparams(base, "batch_size=64,rnn_layer_sizes=[128,128],dropout_rate=0.2,mixed_precision=true,"
                                    "augment_transpositions=[-3,3]")
    assert (c.batch_size, c.rnn_layer_sizes, c.dropout_rate, c.mixed_precision) == (64, (128, 128), 0.2, True)
    assert c.augment_transpositions == (-3, 3)
    assert registry.get_config("char_lstm") == base and base.batch_size == 16


@pytest.mark.parametrize("hparams,match", [
    ("units=5", "unknown name.*units"),
    ("batch_size=abc", "bad value 'abc' for batch_size"),
    ("batch_size=1.5", "bad value '1.5' for batch_size: expected an integer"),
    ("batch_size=abc", "bad value 'abc' for batch_size: expected an integer$"),
    ("dropout_rate=1.5", r"dropout_rate must be in \[0, 1\), got 1.5"),
    ("rnn_layer_sizes=[0]", "rnn_layer_sizes must be"),
    ("rnn_layer_sizes=[1,", "bad list"),
    ("mixed_precision=maybe", "expected true or false"),
    ("batch_size", "expected name=value"),
    ("name=x", "cannot be changed"),
])
def test_bad_hparams_are_clear_errors(hparams, match):
    with pytest.raises(ConfigError, match=match):
        registry.with_hparams(registry.get_config("char_lstm"), hparams)


def test_register_refuses_duplicates_and_round_trips_json():
    c = ModelConfig(name="test_dup_config", rnn_layer_sizes=(8,))
    registry.register_config(c)
    registry.register_config(c)  # the same config again is fine
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_config(dataclasses.replace(c, dropout_rate=0.3))
    assert ModelConfig.from_json(c.to_json()) == c


PLUGIN = textwrap.dedent('''
    from melody_plugin.model.registry import ModelConfig

    def configs():
        return [ModelConfig(name="tiny_plugin_lstm", description="a plugin's config", rnn_layer_sizes=(24,),
                            embedding_size=8, batch_size=16, window_size=8, min_token_count=1)]
''')


@pytest.fixture
def plugin_path(tmp_path):
    """A throwaway installed package that registers a config through the entry-point group."""
    (tmp_path / "tinyplug").mkdir()
    (tmp_path / "tinyplug" / "__init__.py").write_text(PLUGIN)
    dist = tmp_path / "tinyplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[melody_plugin.configs]\ntiny = tinyplug:configs\n")
    sys.path.insert(0, str(tmp_path))
    registry.reload_plugins()
    yield tmp_path
    sys.path.remove(str(tmp_path))


def test_external_config_is_found_and_used_everywhere(plugin_path, tmp_path, tiny_corpus):
    from melody_plugin.generator import get_generator_map
    from melody_plugin.interop.graph import get_pipeline
    from melody_plugin.music.melody import Melody, Note
    from melody_plugin.tokens.vocab import Vocabulary

    config = registry.get_config("tiny_plugin_lstm")
    assert config.rnn_layer_sizes == (24,)
    assert "tiny_plugin_lstm" in get_generator_map()
    vocab = Vocabulary.build([Melody((Note(60, 12),))])
    assert get_pipeline("tiny_plugin_lstm", 0.1, vocab).chain.pipelines[1].steps_per_quarter == 12
    # the console scripts see it too: train and generate with it
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    run_dir = tmp_path / "plugin_run"
    run_cli("melody_train", "--config=tiny_plugin_lstm", f"--input={tiny_corpus}", f"--run_dir={run_dir}",
            "--num_training_steps=30", "--summary_frequency=10", env=env, check=True)
    proc = run_cli("melody_generate", f"--run_dir={run_dir}", "--num_bars=2", f"--output_dir={tmp_path / 'out'}",
                   "--seed=1", env=env, check=True)
    assert "wrote 1 melody of 2 bars" in proc.stdout


def test_non_editable_install_still_finds_builtin_configs(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True, timeout=240)
    wheel = next(wheel_dir.glob("melody_plugin-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "melody_plugin/configs/char_lstm.toml" in names
    assert "melody_plugin/data/default_model/weights.npz" in names
    assert "melody_plugin/data/examples/seed.mid" in names
    assert sum(n.startswith("melody_plugin/data/corpus/") for n in names) >= 90
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=240)
    out = subprocess.run([sys.executable, "-c", "import melody_plugin.model.registry as r, melody_plugin;"
                          "print(melody_plugin.__file__); print(r.list_configs())"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
                         timeout=120, check=True).stdout
    assert str(target) in out and "char_lstm" in out and "folk_lstm" in out

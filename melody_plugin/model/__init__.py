"""Named configs, the Keras model, its numpy twin for generation, and the run directory."""

# where `from melody_plugin.model import build_model` found it before the model step became a folder
from melody_plugin.model.keras_model import LOOKBACK_INPUTS, build_model  # noqa: F401

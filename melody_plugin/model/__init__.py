"""Named configs, the Keras model, its numpy twin for generation, and the run directory."""

# the names of the old module melody_plugin.model, where users import them from
from melody_plugin.model.keras_model import LOOKBACK_INPUTS, _apply, _embedding, _inputs, _layers, build_model  # noqa: F401

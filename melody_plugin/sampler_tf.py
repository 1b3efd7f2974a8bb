"""Thin re-export: the old module path melody_plugin.sampler_tf, kept so old imports keep working.

The code lives in melody_plugin.generate.sampler_tf.
"""

from melody_plugin.generate.sampler_tf import Knobs, Start, Tables, compiled_sampler, initial_states, keras_step_fn  # noqa: F401

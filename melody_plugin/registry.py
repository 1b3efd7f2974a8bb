"""Thin re-export: the old module path melody_plugin.registry, kept so old imports keep working.

The code lives in melody_plugin.model.registry.
"""

from melody_plugin.model.registry import (  # noqa: F401
    _LOADED,
    _PLUGIN_ERRORS,
    _REGISTRY,
    ARCHITECTURE_FIELDS,
    DEFAULT_CONFIG,
    ENTRY_POINT_GROUP,
    LR_DECAYS,
    ModelConfig,
    _build,
    _coerce,
    _field_types,
    _load_builtin,
    _load_plugins,
    _parse_raw,
    _split_hparams,
    get_config,
    list_configs,
    load_config_file,
    parse_hparams,
    register_config,
    reload_plugins,
    with_hparams,
)

"""Built-in model presets, one TOML file each; installed as the package `melody_plugin.configs`."""

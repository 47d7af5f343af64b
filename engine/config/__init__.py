"""Config loading and validation (stdlib + PyYAML; shared by the engine and the TUI)."""

from engine.config.loader import LoadedConfig, Source, dump_yaml, load_config, parse_override
from engine.config.schema import Config, field_docs, validate

__all__ = ["Config", "LoadedConfig", "Source", "dump_yaml", "field_docs", "load_config",
           "load_and_validate", "parse_override", "validate"]


def load_and_validate(path, overrides=()) -> tuple[LoadedConfig, Config]:
    """Load a config file with its bases and overrides, and validate it."""
    loaded = load_config(path, overrides)
    return loaded, validate(loaded)

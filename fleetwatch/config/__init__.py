"""Configuration: one TOML file plus FLEETWATCH_* environment overrides, checked against one
typed table of settings (see settings.py)."""

from fleetwatch.config.loader import Config, ConfigError, Problem, load_config
from fleetwatch.config.settings import SETTINGS, Setting, setting

__all__ = ["Config", "ConfigError", "Problem", "SETTINGS", "Setting", "load_config", "setting"]

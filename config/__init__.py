"""Configuration: the config directory's files, validated, with secrets resolved by reference."""

from __future__ import annotations

from config.channels import CHANNEL_KINDS, ChannelConfig
from config.loader import AppConfig, ConfigError, Problem, load_config
from config.secrets import Secret, known_secret_values
from config.settings import MainSettings

__all__ = [
    "CHANNEL_KINDS",
    "AppConfig",
    "ChannelConfig",
    "ConfigError",
    "MainSettings",
    "Problem",
    "Secret",
    "known_secret_values",
    "load_config",
]

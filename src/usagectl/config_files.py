"""Writing config files (init)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from usagectl.errors import ConfigError


def starter_config_text() -> str:
    return resources.files("usagectl").joinpath("data/config.example.toml").read_text(encoding="utf-8")


def write_starter_config(target: Path, *, force: bool) -> None:
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; use --force to overwrite it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(starter_config_text(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write: {exc.strerror}") from None

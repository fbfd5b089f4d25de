"""Loading the config: discovery (--config, $USAGECTL_CONFIG, the user config dir, /etc), TOML parsing (with a
cache of large files), one-line validation errors, and the redacted form `config show` prints."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)

from usagectl.config.models import ENV_CONFIG, SYSTEM_CONFIG, Config, SecretRef, default_data_dir, redact_url
from usagectl.errors import ConfigError


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("usagectl", appauthor=False)) / "config.toml"


def discover(explicit: Path | None) -> Path | None:
    """--config, then $USAGECTL_CONFIG, then the user config dir, then /etc. None: run on defaults."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found (from ${ENV_CONFIG})")
        return p
    for candidate in (user_config_path(), SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    typ = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if typ == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{value!r} is not one of {', '.join(options)}"
    if typ == "extra_forbidden":
        return "unknown key"
    if typ == "missing":
        return "required key is missing"
    if typ == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def format_validation_error(exc: ValidationError, source: str) -> str:
    err = exc.errors(include_url=False)[0]
    loc = list(err["loc"])
    # Validators on a model report at the model, whose location is fine; drop pydantic's union-branch markers.
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    where = _loc(loc)
    msg = _message(err)
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {where}: {msg}{suffix}" if where else f"{source}: {msg}{suffix}"


def parse(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load(path: Path | None) -> Config:
    """Load and validate a config file; None gives the built-in defaults (no tenants)."""
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    data = _parsed_toml(raw, path)
    cfg = parse(data, str(path))
    return cfg.model_copy(update={"source": path})


# A config listing thousands of tenants takes longer to parse as TOML (pure Python) than the report it configures
# takes to run; above this size the parsed data is cached as JSON, keyed by the file's SHA-256, so every command
# after the first reads it with the C JSON parser. Validation still runs every time; no secret is in the file.
TOML_CACHE_MIN_BYTES = 64 * 1024


def _parsed_toml(raw: bytes, path: Path) -> dict[str, Any]:
    cache = None
    if len(raw) >= TOML_CACHE_MIN_BYTES:
        cache = default_data_dir() / "cache" / "config" / f"{hashlib.sha256(raw).hexdigest()}.json"
        try:
            cached: dict[str, Any] = json.loads(cache.read_bytes(), object_hook=_untag)
            return cached
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: parse the file
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, default=_tag), encoding="utf-8")
            tmp.replace(cache)  # atomic: a reader sees the old state or the whole file
        except OSError:
            pass  # a read-only data dir only costs speed
    return data


# TOML has dates and times that JSON has not: tagged, so the cached data is exactly what tomllib returned.
# datetime before date: a datetime is a date too.
_TAGGED: tuple[tuple[str, Any], ...] = (("$datetime", datetime), ("$date", date), ("$time", dt_time))
_TAGS = dict(_TAGGED)


def _tag(obj: Any) -> Any:
    for tag, kind in _TAGGED:
        if isinstance(obj, kind):
            return {tag: obj.isoformat()}
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, value),) = obj.items()
        kind = _TAGS.get(key)
        if kind is not None and isinstance(value, str):
            return kind.fromisoformat(value)
    return obj


def redacted(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data that loads back as the same config: a secret appears only as its
    reference (`*_env` / `*_file` keys), never its value; a database password is hidden."""

    def walk(obj: Any) -> Any:
        if isinstance(obj, SecretStr):
            return "<redacted>"
        if isinstance(obj, BaseModel):
            out: dict[str, Any] = {}
            for k in type(obj).model_fields:
                value = getattr(obj, k)
                if k == "source":
                    continue
                if isinstance(value, SecretRef):
                    # The config's own keys (`auth_token_env = "VAR"`), so the output can be used as a config.
                    if value.env:
                        out[f"{k}_env"] = value.env
                    if value.file is not None:
                        out[f"{k}_file"] = str(value.file)
                else:
                    out[k] = walk(value)
            return out
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [walk(v) for v in obj]
        if isinstance(obj, Decimal):
            return str(obj)
        if isinstance(obj, Path | date):
            return str(obj)
        return obj

    data: dict[str, Any] = walk(cfg)
    data["database"] = {"url": redact_url(cfg.database_url())}
    return data

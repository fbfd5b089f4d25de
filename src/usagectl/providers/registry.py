"""Which providers exist and how to build them from the config."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from usagectl.config import Config
from usagectl.errors import InputError
from usagectl.providers.base import Provider
from usagectl.store.engine import Store

# `usage_metrics.source` values, in the order collect runs and reports them.
HTTP_SOURCES = ("twilio", "sendgrid", "openai")
LOCAL_SOURCES = ("events", "ailog")
SOURCES = HTTP_SOURCES + LOCAL_SOURCES


def validate_sources(only: Sequence[str] | None) -> tuple[str, ...]:
    if not only:
        return SOURCES
    unknown = [s for s in only if s not in SOURCES]
    if unknown:
        raise InputError(f"--provider: unknown provider {unknown[0]!r}; valid: {', '.join(SOURCES)}")
    return tuple(s for s in SOURCES if s in only)


def build_providers(cfg: Config, store: Store, *, only: Sequence[str] | None = None) -> list[Provider]:
    """The configured providers (all, or those named in `only`). Raises ConfigError for a missing secret."""
    built: list[Provider] = []
    try:
        for source in validate_sources(only):
            module = importlib.import_module(f"usagectl.providers.{source}")
            provider: Provider | None = module.make(cfg, store) if source == "events" else module.make(cfg)
            if provider is not None:
                built.append(provider)
    except BaseException:
        for p in built:
            p.close()
        raise
    return built

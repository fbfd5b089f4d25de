"""Which providers exist, how to build them from the config, and how to check their credentials.

Adding a provider: a module in this folder with a `make` (and, over HTTP, a `check`), one row in `PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from usagectl.config import Config
from usagectl.errors import InputError
from usagectl.providers import ailog, events, openai, sendgrid, twilio
from usagectl.providers.base import Provider
from usagectl.records import CheckResult
from usagectl.store.engine import Store


@dataclass(frozen=True)
class Source:
    #: the provider, or None when the config gives it nothing to collect (no credentials, no tenant uses it)
    make: Callable[[Config, Store], Provider | None]
    #: one cheap request per configured credential (`config check --online`); None for local sources
    check: Callable[[Config], list[CheckResult]] | None = None


# `usage_metrics.source` -> its provider, in the order collect runs and reports them.
PROVIDERS: dict[str, Source] = {
    "twilio": Source(lambda cfg, _store: twilio.make(cfg), twilio.check),
    "sendgrid": Source(lambda cfg, _store: sendgrid.make(cfg), sendgrid.check),
    "openai": Source(lambda cfg, _store: openai.make(cfg), openai.check),
    "events": Source(events.make),
    "ailog": Source(lambda cfg, _store: ailog.make(cfg)),
}
SOURCES = tuple(PROVIDERS)
HTTP_SOURCES = tuple(s for s, p in PROVIDERS.items() if p.check is not None)
LOCAL_SOURCES = tuple(s for s, p in PROVIDERS.items() if p.check is None)


def validate_sources(only: Sequence[str] | None) -> tuple[str, ...]:
    if not only:
        return SOURCES
    unknown = [s for s in only if s not in SOURCES]
    if unknown:
        raise InputError(f"--provider: unknown provider {unknown[0]!r}; valid: {', '.join(SOURCES)}")
    return tuple(s for s in SOURCES if s in only)


@contextmanager
def open_providers(
    cfg: Config, store: Store, *, only: Sequence[str] | None = None
) -> Iterator[list[Provider]]:
    """The configured providers (all, or those named in `only`), each closed on the way out, also when building
    a later one fails. Raises ConfigError for a missing secret, InputError for an unknown name."""
    with ExitStack() as stack:
        built: list[Provider] = []
        for source in validate_sources(only):
            provider = PROVIDERS[source].make(cfg, store)
            if provider is not None:
                stack.callback(provider.close)
                built.append(provider)
        yield built


def check_credentials(cfg: Config) -> list[CheckResult]:
    """`config check --online`: every HTTP provider's credential checks, in source order."""
    results: list[CheckResult] = []
    for source in PROVIDERS.values():
        if source.check is not None:
            results.extend(source.check(cfg))
    return results

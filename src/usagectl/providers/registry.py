"""Which providers exist, how to build them from the config, and how to check their credentials.

Adding a provider: a module in this folder with a `make` (and, over HTTP, a `check`), one row in `PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, cast

from usagectl.errors import InputError

if TYPE_CHECKING:
    from usagectl.config import Config
    from usagectl.providers.base import Provider
    from usagectl.records import CheckResult
    from usagectl.store.engine import Store


@dataclass(frozen=True)
class Source:
    """A provider module of this package, imported only when it is built or checked, so that the table (and the
    command-line help that names its sources) costs nothing to import."""

    #: the module under usagectl.providers with its `make(cfg)` (or `make(cfg, store)`) and, over HTTP, `check`
    module: str
    #: whether `make` reads the store (a local source over usagectl's own tables)
    needs_store: bool = False
    #: whether it talks to a provider over HTTP: then `check(cfg)` tests its credentials (`config check --online`)
    http: bool = False

    def make(self, cfg: Config, store: Store) -> Provider | None:
        """The provider, or None when the config gives it nothing to collect (no credentials, no tenant uses
        it)."""
        mod = import_module(f"usagectl.providers.{self.module}")
        return cast("Provider | None", mod.make(cfg, store) if self.needs_store else mod.make(cfg))

    def check(self, cfg: Config) -> list[CheckResult]:
        """One cheap request per configured credential; nothing for a local source."""
        if not self.http:
            return []
        return cast("list[CheckResult]", import_module(f"usagectl.providers.{self.module}").check(cfg))


# `usage_metrics.source` -> its provider, in the order collect runs and reports them. The one list of sources:
# the commands' help and messages are written from it.
PROVIDERS: dict[str, Source] = {
    "twilio": Source("twilio", http=True),
    "sendgrid": Source("sendgrid", http=True),
    "openai": Source("openai", http=True),
    "events": Source("events", needs_store=True),
    "ailog": Source("ailog"),
}
SOURCES = tuple(PROVIDERS)
HTTP_SOURCES = tuple(s for s, p in PROVIDERS.items() if p.http)
LOCAL_SOURCES = tuple(s for s, p in PROVIDERS.items() if not p.http)


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
    return [result for source in PROVIDERS.values() for result in source.check(cfg)]

"""State shared by the commands of one invocation: global options, the config, the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from usagectl.config import Config
    from usagectl.store.engine import Store


@dataclass
class AppState:
    config_path: Path | None = None
    quiet: bool = False
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from usagectl import config as cfgmod

            self._config = cfgmod.load(cfgmod.discover(self.config_path))
        return self._config

    def store(self, *, sync_tenants: bool = True) -> Store:
        """The database, schema-checked, with the config's tenants synced into it."""
        if self._store is None:
            from usagectl.store.engine import open_store
            from usagectl.store.tenants import sync_tenants as sync

            cfg = self.config()
            store = open_store(cfg.database_url())
            # Only a real config file is the list of tenants: running on built-in defaults (no file) must not
            # mark every tenant in a shared database inactive.
            if sync_tenants and cfg.source is not None:
                sync(store, cfg.tenants)
            self._store = store
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def get_state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj

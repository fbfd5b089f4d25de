"""`usagectl sandbox`: the fake providers served until Ctrl-C, with a config file pointing at them, so that
collect, rollup and report can be tried by hand. The config's secret files live in the sandbox's temporary folder:
they exist exactly as long as the command runs, like the servers they unlock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from usagectl.errors import InputError, UsagectlError
from usagectl.periods import utc_today
from usagectl.sandbox import Sandbox, demo_tenants

MAX_BASE_PORT = 65535 - 2  # three consecutive ports


@dataclass(frozen=True)
class Running:
    urls: dict[str, str]  # provider -> base URL
    config_path: Path
    database_url: str
    tenants: list[str]


def config_text(sb: Sandbox, database_url: str) -> str:
    """The demo tenants on this sandbox, with the price books and plans of config.example.toml."""
    import tomllib

    import tomli_w

    from usagectl.config_files import starter_config_text

    data = tomllib.loads(sb.toml(sb.config(demo_tenants()), database_url))
    example = tomllib.loads(starter_config_text())
    for key in ("pricing", "plans"):
        if key in example:
            data[key] = example[key]
    head = (
        "# Written by `usagectl sandbox`: valid only while that command runs (the secret files below are\n"
        "# removed when it stops).\n"
    )
    return head + tomli_w.dumps(data)


def serve(
    *,
    port: int,
    config_path: Path | None,
    database_url: str | None,
    on_ready: Callable[[Running], None],
    stop: threading.Event | None = None,
) -> None:
    """Start the servers, write the config, call `on_ready`, and serve until `stop` is set or Ctrl-C."""
    if port and not 1024 <= port <= MAX_BASE_PORT:
        raise InputError(f"--port: {port} is not between 1024 and {MAX_BASE_PORT} (three ports from it)")
    sb = Sandbox(port=port)
    sb.world.in_flight_day = utc_today() - timedelta(days=1)  # yesterday's last call still ringing
    try:
        sb.__enter__()
    except OSError as exc:
        where = f"ports {port}-{port + 2}" if port else "an ephemeral port"
        raise UsagectlError(f"sandbox: cannot listen on 127.0.0.1 {where}: {exc.strerror}") from None
    try:
        target = config_path or sb.folder / "sandbox.toml"
        url = database_url or f"sqlite:///{target.resolve().with_suffix('.db')}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(config_text(sb, url), encoding="utf-8")
        except OSError as exc:
            raise UsagectlError(f"--write-config: {target}: cannot write: {exc.strerror}") from None
        on_ready(
            Running(
                urls={s.name: s.url for s in sb.servers},
                config_path=target,
                database_url=url,
                tenants=[t.slug for t in demo_tenants()],
            )
        )
        event = stop or threading.Event()
        # A timeout keeps the main thread responsive to Ctrl-C (a bare wait() blocks signals on some platforms).
        while not event.wait(0.5):
            pass
    finally:
        sb.__exit__(None, None, None)

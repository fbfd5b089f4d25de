"""A real `python -m usagectl serve` on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

QUERY_SECRET = "qs-SECRET-value-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[str]
    token: str
    root: str

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def _start(args: list[str], env: dict[str, str], base: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "usagectl", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Readiness, not timing: poll until it answers (or has exited).
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(
                f"serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not start")


@pytest.fixture
def server(
    db_url: str, write_config: Callable[[str], Path], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    path = write_config(
        '[[tenants]]\nslug = "acme"\nplan = "pro"\n[[tenants]]\nslug = "globex"\nplan = "pro"\n'
    )
    monkeypatch.setenv("USAGECTL_CONFIG", str(path))
    monkeypatch.setenv("USAGECTL_DATABASE_URL", db_url)
    token = cli("-q", "token", "create", "--tenant", "acme").out.strip()
    root = cli("-q", "token", "create", "--root").out.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = _start(["serve", "--host", "127.0.0.1", "--port", str(port)], env, base)
    srv = Server(base, proc, token, root)
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def test_serve_answers_over_http_and_logs_no_secret(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as c:
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        auth = {"Authorization": f"Bearer {server.token}"}
        s = c.get("/api/admin/usage/summary", params={"month": "2026-10", "x": QUERY_SECRET}, headers=auth)
        assert s.status_code == 200 and s.json()["tenant"]["slug"] == "acme"
        assert s.headers["cache-control"] == "private, no-store"
        assert s.headers["x-content-type-options"] == "nosniff"
        assert "server" not in s.headers
        d = c.get("/api/admin/usage/daily", headers=auth)
        assert d.status_code == 200 and d.json()["window"]["days"] == 30
        assert c.get("/api/admin/usage/daily", params={"tenant": "globex"}, headers=auth).status_code == 403
        t = c.get("/api/root-admin/usage/tenants", headers={"Authorization": f"Bearer {server.root}"})
        assert t.status_code == 200 and t.json()["tenant_count"] == 2
        bad = c.get("/api/admin/usage/summary", headers={"Authorization": "Bearer uct_" + "x" * 43})
        assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/openapi.json").json()["info"]["title"] == "usagectl usage API"
    log = server.stop()
    assert '"GET /api/admin/usage/summary" 200' in log
    assert '"GET /api/admin/usage/daily" 403' in log
    assert server.token not in log and server.root not in log
    assert QUERY_SECRET not in log and "month=" not in log


def test_serve_with_a_bad_auth_config_exits_2_in_one_line(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_config('[serve.auth]\nmode = "jwt"\njwt_secret_env = "NO_SUCH_VAR_FOR_USAGECTL"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NO_SUCH_VAR_FOR_USAGECTL", None)
    r = subprocess.run(
        [sys.executable, "-m", "usagectl", "-c", str(path), "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "NO_SUCH_VAR_FOR_USAGECTL is not set" in r.stderr


@pytest.mark.parametrize("args", [("--port", "0"), ("--port", "70000"), ("--workers", "0")])
def test_serve_bad_options_are_usage_errors(cli: Callable[..., Any], args: tuple[str, ...]) -> None:
    r = cli("serve", *args)
    assert r.code == 2 and r.out == ""
    assert args[0] in r.err


def test_config_show_names_the_jwt_secret_without_it(
    cli: Callable[..., Any], write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_JWT_SECRET", "s3cr3t-value-never-shown")
    path = write_config('[serve.auth]\nmode = "jwt"\njwt_secret_env = "PLATFORM_JWT_SECRET"\n')
    for fmt in ("toml", "json"):
        r = cli("-c", str(path), "config", "show", "--format", fmt)
        assert r.code == 0, r.err
        assert "PLATFORM_JWT_SECRET" in r.out and "s3cr3t" not in r.out


def _form_token(c: httpx.Client, path: str) -> str:
    import re

    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get(path).text)
    assert m, path
    return m.group(1)


def test_serve_refuses_non_ascii_cookies_and_csrf_fields_without_a_server_error(server: Server) -> None:
    """Issue 23 items 1 and 2 over a real process: a 303 to /signin that clears the cookie, the 403 page."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=server.base, timeout=30) as c:
        r = c.post("/signin", data={"token": server.token, "csrf_token": _form_token(c, "/signin")})
        assert r.status_code == 303
        payload = c.cookies["usagectl_session"].split(".")[0]
    for value in ("é.é".encode(), f"{payload}.ééé".encode(), "é.é".encode("latin-1"), "日本".encode()):
        for path in ("/admin/billing-usage", "/admin/system-usage", "/admin/billing-usage.csv"):
            r = httpx.get(server.base + path, headers={"cookie": b"usagectl_session=" + value}, timeout=30)
            assert r.status_code == 303 and r.headers["location"] == "/signin", (path, value)
            cleared = [
                v for k, v in r.headers.multi_items() if k == "set-cookie" and "usagectl_session=" in v
            ]
            assert cleared and "max-age=0" in cleared[0].lower()
    with httpx.Client(base_url=server.base, timeout=30) as c:
        _form_token(c, "/signin")  # the CSRF cookie
        for field in ("%C3%A9", "%E6%97%A5%E6%9C%AC", "%FF"):
            r = c.post("/signin", content=f"token={server.token}&csrf_token={field}".encode(), headers=form)
            assert r.status_code == 403 and "The form expired" in r.text, field
            r = c.post("/signout", content=f"csrf_token={field}".encode(), headers=form)
            assert r.status_code == 403 and "The form expired" in r.text, field
    assert "Traceback" not in server.stop()


def test_serve_sign_out_ends_the_session_for_a_saved_cookie(server: Server) -> None:
    """Issue 23 item 3 over HTTP: the cookie saved before sign-out is refused after it."""
    with httpx.Client(base_url=server.base, timeout=30) as c:
        r = c.post("/signin", data={"token": server.token, "csrf_token": _form_token(c, "/signin")})
        assert r.status_code == 303
        saved = c.cookies["usagectl_session"]
        copy = {"cookie": f"usagectl_session={saved}"}
        assert httpx.get(server.base + "/admin/billing-usage", headers=copy, timeout=30).status_code == 200
        r = c.post("/signout", data={"csrf_token": _form_token(c, "/admin/billing-usage")})
        assert r.status_code == 303 and r.headers["location"] == "/signin"
    r = httpx.get(server.base + "/admin/billing-usage", headers=copy, timeout=30)
    assert r.status_code == 303 and r.headers["location"] == "/signin"

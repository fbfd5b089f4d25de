"""`usagectl sandbox` (issue 12 item 7): the fake providers served until Ctrl-C, and a config that works with
collect, rollup and report from another shell for as long as the command runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _usagectl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usagectl", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _sandbox(args: list[str], **env: str) -> subprocess.Popen[str]:
    """`usagectl sandbox ARGS` in its own process (`env`: more variables); the caller stops it."""
    return subprocess.Popen(
        [sys.executable, "-m", "usagectl", "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_sandbox_serves_until_ctrl_c_with_a_working_config(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "100"}
    cfg = tmp_path / "sandbox.toml"
    proc = _sandbox(["--write-config", str(cfg)], COLUMNS="100")
    try:
        assert proc.stdout is not None
        # The config path on stdout means the servers are up and the file is written.
        assert proc.stdout.readline().strip() == str(cfg)
        text = cfg.read_text()
        secret_files = [Path(line.split('"')[1]) for line in text.splitlines() if "_file = " in line]
        assert secret_files and all(f.is_file() for f in secret_files)
        assert "[plans.pro" in text and "included" in text

        assert _usagectl("--config", str(cfg), "config", "check", env=env).returncode == 0
        collected = _usagectl(
            "--config", str(cfg), "collect", "--since", "-3d", "--until", "yesterday", env=env
        )
        assert collected.returncode == 0, collected.stderr
        rolled = _usagectl("--config", str(cfg), "rollup", "--since", "-3d", "--until", "yesterday", env=env)
        assert rolled.returncode == 0, rolled.stderr
        report = _usagectl("--config", str(cfg), "report", "--tenant", "acme", "--days", "3", env=env)
        assert report.returncode == 0, report.stderr
        assert "Plan pro" in report.stdout and "% " in report.stdout
        assert cfg.with_suffix(".db").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "sandbox stopped" in err
    # The secrets lived as long as the command.
    assert not any(f.exists() for f in secret_files)


def test_sandbox_port_errors_are_one_line(cli: Callable[..., Any]) -> None:
    r = cli("sandbox", "--port", "80")
    assert r.code == 2 and r.err.count("\n") == 1 and "--port: 80 is not between" in r.err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if port > 65533:
            return
        r = cli("sandbox", "--port", str(port))
    assert r.code == 1 and r.err.count("\n") == 1 and f"cannot listen on 127.0.0.1 ports {port}-" in r.err


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_sandbox_removes_its_temporary_folder_when_stopped_by_a_signal(tmp_path: Path, signame: str) -> None:
    """Issue 23: `usagectl sandbox` stopped by SIGTERM left its temporary folder, with the fake credential files
    the written config points at. Stopped by any of the three, it removes it and says so."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = _sandbox([], TMPDIR=str(temp))
    try:
        assert proc.stdout is not None
        cfg = Path(proc.stdout.readline().strip())  # the servers are up, the config written
        assert cfg.is_file() and cfg.is_relative_to(temp)
        secret_files = [
            Path(line.split('"')[1]) for line in cfg.read_text().splitlines() if "_file = " in line
        ]
        assert secret_files and all(f.is_file() and f.is_relative_to(temp) for f in secret_files)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "sandbox stopped" in err and "Traceback" not in err
    assert list(temp.iterdir()) == []

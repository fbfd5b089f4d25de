"""Shared by the benchmark scripts: timing, child processes with their peak memory, the machine, the verdicts."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
USAGECTL = (
    str(VENV_BIN / "usagectl") if (VENV_BIN / "usagectl").exists() else shutil.which("usagectl") or "usagectl"
)
SQLITE3_CLI = shutil.which("sqlite3")


@dataclass
class Run:
    seconds: float  # wall clock
    cpu: float  # the child's user + system CPU seconds
    maxrss_mb: float  # the child's peak resident set size (ru_maxrss)
    stdout: bytes


def run_child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    stdout_to: str | None = None,
) -> Run:
    """Run one child to completion: wall time, and its own peak RSS from os.wait4 (not the running maximum over
    all children that RUSAGE_CHILDREN gives). stdout goes to `stdout_to` (a path) or is captured."""
    out = open(stdout_to, "wb") if stdout_to else None  # noqa: SIM115
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out or subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # communicate() would reap the child itself; read the pipes, then reap with wait4 for the rusage.
        data, err = _drain(p, stdin)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if out:
            out.close()
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({p.returncode}): {err.decode(errors='replace').strip()}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, data)


def _drain(p: subprocess.Popen[bytes], stdin: bytes | None) -> tuple[bytes, bytes]:
    import threading

    chunks: dict[str, bytes] = {}

    def read(name: str, stream: object) -> None:
        chunks[name] = stream.read() if stream is not None else b""  # type: ignore[attr-defined]

    threads = [threading.Thread(target=read, args=(n, s)) for n, s in (("out", p.stdout), ("err", p.stderr))]
    for t in threads:
        t.start()
    if p.stdin is not None:
        if stdin:
            p.stdin.write(stdin)
        p.stdin.close()
    for t in threads:
        t.join()
    return chunks["out"], chunks["err"]


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return t1 - t0, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def verdict(
    name: str, figure: float, baseline: float, target: float, cpu: tuple[float, float] | None = None
) -> bool:
    """Print one comparison; the verdict is on wall-clock medians. `cpu`: the same medians in CPU seconds,
    shown too because the wall clock of a shared machine is noisy."""
    ratio = figure / baseline
    ok = ratio <= target
    extra = f"; CPU {cpu[0]:.3f}s vs {cpu[1]:.3f}s = {cpu[0] / cpu[1]:.2f}x" if cpu else ""
    print(
        f"{name}: {figure:.3f}s vs {baseline:.3f}s  ratio {ratio:.2f}x{extra}  (target <= {target}x: "
        f"{'OK' if ok else 'MISSED'})"
    )
    return ok


def alternate(
    a: Callable[[], Run], b: Callable[[], Run], runs: int, warmup: int = 2
) -> tuple[list[Run], list[Run]]:
    """`runs` runs of each, alternating, after `warmup` unrecorded runs of each."""
    for _ in range(warmup):
        a()
        b()
    ra, rb = [], []
    for _ in range(runs):
        ra.append(a())
        rb.append(b())
    return ra, rb


def compare(name: str, ours: Sequence[Run], base: Sequence[Run], target: float) -> bool:
    """verdict() on the medians of two lists of child runs (wall and CPU)."""
    return verdict(
        name,
        median([r.seconds for r in ours]),
        median([r.seconds for r in base]),
        target,
        cpu=(median([r.cpu for r in ours]), median([r.cpu for r in base])),
    )


def limit(name: str, figure: float, target: float, unit: str = "s") -> bool:
    ok = figure < target
    print(f"{name}: {figure:.3f}{unit}  (target < {target}{unit}: {'OK' if ok else 'MISSED'})")
    return ok


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cli = ""
    if SQLITE3_CLI:
        v = subprocess.run([SQLITE3_CLI, "--version"], capture_output=True, text=True).stdout.split()
        cli = f", sqlite3 CLI {v[0] if v else '?'}"
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version} (python module){cli}{load}"
    )


def child_env(**extra: str) -> dict[str, str]:
    """A clean environment for usagectl children: no user config, no colour, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGECTL_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


__all__ = [
    "BENCH_DIR",
    "SQLITE3_CLI",
    "USAGECTL",
    "Run",
    "alternate",
    "child_env",
    "compare",
    "limit",
    "machine",
    "median",
    "run_child",
    "timed",
    "verdict",
]

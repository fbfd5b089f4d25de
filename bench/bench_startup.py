"""Start-up: `usagectl --version` against `python -c "import typer"` (the floor of any Typer CLI).

    python bench/bench_startup.py [--runs 30]

Both run as fresh processes of the same interpreter (the venv's), alternating, after two warm-up runs each (so
the .pyc files exist and the OS cache is warm); the median wall time is compared. Target: at most 3x.
"""

from __future__ import annotations

import argparse
import sys

from common import USAGECTL, child_env, machine, median, run_child, verdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    env = child_env()
    ours_argv = [USAGECTL, "--version"]
    base_argv = [sys.executable, "-c", "import typer"]
    for _ in range(2):
        run_child(ours_argv, env=env)
        run_child(base_argv, env=env)
    ours, base = [], []
    for _ in range(args.runs):
        ours.append(run_child(ours_argv, env=env).seconds)
        base.append(run_child(base_argv, env=env).seconds)
    print(machine())
    print(f"{args.runs} runs each; min usagectl {min(ours):.3f}s, min import typer {min(base):.3f}s")
    ok = verdict("usagectl --version vs python -c 'import typer' (median)", median(ours), median(base), 3.0)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Start-up: `usagectl --version` against `python -c "import typer"` (the floor of any Typer CLI).

    python bench/bench_startup.py [--runs 30]

Both run as fresh processes of the same interpreter (the venv's), alternating, after two warm-up runs each (so
the .pyc files exist and the OS cache is warm); the median wall time is compared. Target: at most 3x.
"""

from __future__ import annotations

import argparse
import sys

from common import USAGECTL, alternate, child_env, compare, machine, run_child


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    env = child_env()
    ours_argv = [USAGECTL, "--version"]
    base_argv = [sys.executable, "-c", "import typer"]
    ours, base = alternate(
        lambda: run_child(ours_argv, env=env), lambda: run_child(base_argv, env=env), args.runs
    )
    print(machine())
    print(
        f"{args.runs} runs each; min usagectl {min(r.seconds for r in ours):.3f}s, "
        f"min import typer {min(r.seconds for r in base):.3f}s"
    )
    ok = compare("usagectl --version vs python -c 'import typer' (median)", ours, base, 3.0)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Report at 10,000 tenants: `usagectl report --tenant X` as a child process.

    python bench/bench_report.py [--tenants 10000] [--runs 15] [--format table]

1. On the 10,000-tenant database against the same command on a 1-tenant database (same 90 days, same month
   reported): the report must only run indexed queries, so its time must not grow with the tenant count.
   Target: at most 1.2x. Run without a config file (tenants come from the database), and again with a config
   file listing every tenant (then each command also loads the config and syncs the tenants table).
2. Against `python -c "import <every module the report command loads>"`: the import floor. The module list is
   taken from sys.modules after running the same command in-process. Target: at most 1.3x.

Children get USAGECTL_DATABASE_URL pointing at the file and an empty HOME (no user config). Medians of --runs
runs after two warm-up runs, the commands alternating.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import USAGECTL, alternate, child_env, compare, machine, run_child
from gen_data import PLANS, copy_db, rolled_up_db, slug

MONTH = "2026-03"

_LIST_MODULES = """
import io, json, sys, contextlib
before = set(sys.modules)
from usagectl.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(sys.argv[1:])
assert rc == 0, rc
print(json.dumps(sorted(m for m in set(sys.modules) - before if not m.startswith("__main__"))))
"""


def loaded_modules(argv: list[str], env: dict[str, str]) -> list[str]:
    """Every module the command imports (run in-process in a child, so nothing else is loaded)."""
    r = subprocess.run([sys.executable, "-c", _LIST_MODULES, *argv], env=env, capture_output=True, check=True)
    return list(json.loads(r.stdout.decode().splitlines()[-1]))


def import_floor_code(modules: list[str]) -> str:
    # Some entries are aliases or were created by their parent (os.path, six.moves...): skip what fails.
    return (
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception:\n"
        "        pass\n"
    )


def write_config(path: Path, tenants: int) -> Path:
    lines = ["[plans.pro]\nincluded = { sms = 5000 }\n"]
    for i in range(1, tenants + 1):
        lines.append(f'[[tenants]]\nslug = "{slug(i)}"\nplan = "{PLANS[(i - 1) % 3]}"\n')
    path.write_text("".join(lines))
    return path


def versus(
    name: str,
    a: list[str],
    env_a: dict[str, str],
    b: list[str],
    env_b: dict[str, str],
    runs: int,
    target: float,
) -> bool:
    ra, rb = alternate(lambda: run_child(a, env=env_a), lambda: run_child(b, env=env_b), runs)
    return compare(name, ra, rb, target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--format", default="table", choices=("table", "json", "csv"))
    args = ap.parse_args()
    big_src = rolled_up_db(args.tenants, args.days)
    small_src = rolled_up_db(1, args.days)
    # A tenant with per-model AI rows, in the middle of the id range.
    tenant = slug(args.tenants // 2 // 10 * 10 or 1)
    print(machine())
    ok = True
    with tempfile.TemporaryDirectory(prefix="usagectl-bench-") as tmp:
        home = Path(tmp)
        # Copies: with a config file, each command syncs the tenants into the database.
        big = copy_db(big_src, home / "big.db")
        small = copy_db(small_src, home / "small.db")
        base = child_env(
            HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data")
        )
        env_big = {**base, "USAGECTL_DATABASE_URL": f"sqlite:///{big}"}
        env_small = {**base, "USAGECTL_DATABASE_URL": f"sqlite:///{small}"}
        argv_big = [USAGECTL, "report", "--tenant", tenant, "--month", MONTH, "--format", args.format]
        argv_small = [USAGECTL, "report", "--tenant", slug(1), "--month", MONTH, "--format", args.format]
        rows = run_child(argv_big, env=env_big).stdout
        print(f"report --format {args.format} of {tenant} for {MONTH}: {len(rows):,} bytes of output")

        print(f"\n1. {args.tenants:,}-tenant database vs 1-tenant database, no config file")
        ok &= versus(
            "report, 10,000 vs 1 tenant (median)", argv_big, env_big, argv_small, env_small, args.runs, 1.2
        )

        cfg_big = write_config(home / "big.toml", args.tenants)
        cfg_small = write_config(home / "small.toml", 1)
        print(f"\n   the same with a config file listing every tenant ({cfg_big.stat().st_size:,} bytes)")
        ok &= versus(
            "report, 10,000 vs 1 tenant, with config (median)",
            [*argv_big[:1], "--config", str(cfg_big), *argv_big[1:]],
            env_big,
            [*argv_small[:1], "--config", str(cfg_small), *argv_small[1:]],
            env_small,
            args.runs,
            1.2,
        )

        modules = loaded_modules(argv_big[1:], env_big)
        tops = sorted({m.split(".")[0] for m in modules} - set(sys.stdlib_module_names))
        tops = [t for t in tops if not t.startswith("_")]
        print(f"\n2. report vs importing the {len(modules)} modules it loads; packages: {', '.join(tops)}")
        floor = [sys.executable, "-c", import_floor_code(modules)]
        ok &= versus("report vs its import floor (median)", argv_big, env_big, floor, env_big, args.runs, 1.3)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

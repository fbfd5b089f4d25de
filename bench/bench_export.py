"""Export at 10,000 tenants: `usagectl export --format csv` of all 900,000 tenant-day rows.

    python bench/bench_export.py [--tenants 10000] [--runs 3]

Against a bare Python loop over the same query (sqlite3 module, fetchmany, csv.writer, money formatted from the
integer micro-USD), both as child processes writing to a file; the two files must be byte-identical.
Target: at most 1.3x, and the usagectl child's peak memory (ru_maxrss) under 150 MB. Also shows the bare loop
against `sqlite3 -csv` (the C shell formatting the same columns) when the shell is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from common import SQLITE3_CLI, USAGECTL, alternate, child_env, compare, limit, machine, median, run_child
from gen_data import START, rolled_up_db
from usagectl.reports import EXPORT_COLUMNS, MONEY_COLUMNS

_TEXT = ("tenant", "tenant_name", "plan_tier", "pricing_version")


def _select(money: str) -> str:
    """The export query (reports.export_rows) as SQL; `money` formats a micro-USD column named {c}."""
    cols = []
    for c in EXPORT_COLUMNS:
        if c == "tenant":
            cols.append("t.slug AS tenant")
        elif c == "tenant_name":
            cols.append("t.name AS tenant_name")
        elif c in MONEY_COLUMNS:
            cols.append(f"{money.format(c=f'r.{c}')} AS {c}")
        else:
            cols.append(f"r.{c}")
    return (
        f"SELECT {', '.join(cols)} FROM usage_rollups_daily r JOIN tenants t ON t.id = r.tenant_id "
        "WHERE r.date >= ? AND r.date < ? ORDER BY r.date, r.tenant_id"
    )


BARE_LOOP = """
import csv, sqlite3, sys
db, start, end, out, sql = sys.argv[1:]
money = {money}
text = {text}
con = sqlite3.connect(db)
cur = con.execute(sql, (start, end))
with open(out, "w", newline="") as f:
    w = csv.writer(f, lineterminator="\\n")
    w.writerow({columns})
    while rows := cur.fetchmany(1000):
        for row in rows:
            cells = list(row)
            for i in money:
                v = cells[i]
                if v is not None:
                    cells[i] = f"{{v // 1000000}}.{{v % 1000000:06d}}"
            for i in text:
                v = cells[i]
                if v[:1] in ("=", "+", "-", "@", "\\t", "\\r"):
                    cells[i] = "'" + v
            w.writerow(cells)
"""


def bare_loop_code() -> str:
    money = [i for i, c in enumerate(EXPORT_COLUMNS) if c in MONEY_COLUMNS]
    text = [i for i, c in enumerate(EXPORT_COLUMNS) if c in _TEXT]
    return BARE_LOOP.format(money=money, text=text, columns=list(EXPORT_COLUMNS))


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def same_cells(a: Path, b: Path) -> bool:
    import csv
    from itertools import zip_longest

    with open(a, newline="") as fa, open(b, newline="") as fb:
        return all(x == y for x, y in zip_longest(csv.reader(fa), csv.reader(fb)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    db = rolled_up_db(args.tenants, args.days)
    end = START + timedelta(days=args.days)
    print(machine())
    ok = True
    with tempfile.TemporaryDirectory(prefix="usagectl-bench-") as tmp:
        work = Path(tmp)
        env = child_env(
            HOME=str(work), XDG_CONFIG_HOME=str(work / "config"), USAGECTL_DATABASE_URL=f"sqlite:///{db}"
        )
        ours_out, bare_out, cli_out = work / "ours.csv", work / "bare.csv", work / "cli.csv"
        ours = [
            USAGECTL, "export", "--format", "csv",
            "--since", START.isoformat(), "--until", (end - timedelta(days=1)).isoformat(),
        ]  # fmt: skip
        bare = [
            sys.executable, "-c", bare_loop_code(),
            str(db), START.isoformat(), end.isoformat(), str(bare_out), _select("{c}"),
        ]  # fmt: skip
        r_ours, r_bare = alternate(
            lambda: run_child(ours, env=env, stdout_to=str(ours_out)),
            lambda: run_child(bare, env=env),
            args.runs,
            warmup=1,
        )
        with open(ours_out, "rb") as f:
            rows = sum(1 for _ in f) - 1
        same = sha(ours_out) == sha(bare_out)
        print(
            f"{rows:,} rows, {ours_out.stat().st_size / 1e6:.0f} MB of CSV; "
            f"usagectl and the bare loop wrote {'identical' if same else 'DIFFERENT'} files"
        )
        print(
            f"  runs (wall s): usagectl {', '.join(f'{r.seconds:.2f}' for r in r_ours)}; "
            f"bare {', '.join(f'{r.seconds:.2f}' for r in r_bare)}"
        )
        ok &= same
        ok &= compare("export csv vs bare python loop (median)", r_ours, r_bare, 1.3)
        ok &= limit("export csv peak RSS (max of runs)", max(r.maxrss_mb for r in r_ours), 150, " MB")
        print(f"  bare loop peak RSS: {max(r.maxrss_mb for r in r_bare):.0f} MB")
        if SQLITE3_CLI:
            money = "CASE WHEN {c} IS NULL THEN '' ELSE printf('%d.%06d', {c} / 1000000, {c} % 1000000) END"
            sql = (
                _select(money)
                .replace("?", f"'{START.isoformat()}'", 1)
                .replace("?", f"'{end.isoformat()}'", 1)
            )
            cli = [SQLITE3_CLI, "-csv", "-header", "-readonly", str(db), sql]
            r_cli = [run_child(cli, stdout_to=str(cli_out)) for _ in range(args.runs)]
            t_cli = median([r.seconds for r in r_cli])
            t_bare = median([r.seconds for r in r_bare])
            if sha(cli_out) == sha(bare_out):
                same_cli = "identical"
            else:  # the shell quotes every text cell with a space in it; the cells themselves must match
                same_cli = (
                    "the same cells, quoted differently" if same_cells(cli_out, bare_out) else "DIFFERENT"
                )
            print(
                f"  sqlite3 -csv (same query, money formatted in SQL): median {t_cli:.3f}s; "
                f"bare python loop / sqlite3 -csv = {t_bare / t_cli:.2f}x (output: {same_cli})"
            )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

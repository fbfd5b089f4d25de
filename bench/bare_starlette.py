"""A bare Starlette endpoint: the SQL statements of a usagectl endpoint, run with psycopg, answered with
json.dumps of the rows. bench_ranking.py starts it as a child beside `usagectl serve`, so that the framework's,
SQLAlchemy's and the report objects' own cost is visible.

    python bench/bare_starlette.py --url postgresql://... --sql statements.json --port 8999

statements.json: {"<path>": ["SQL", ...]}; every GET of <path> runs its statements in order on the thread's own
connection and returns {"results": [[row, ...], ...]}. It sends the same Server-Timing header as usagectl serve.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_local = threading.local()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--sql", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    with open(args.sql, encoding="utf-8") as f:
        statements: dict[str, list[str]] = json.load(f)
    url = args.url.replace("postgresql+psycopg://", "postgresql://")

    def conn() -> Any:
        c = getattr(_local, "conn", None)
        if c is None:
            c = _local.conn = psycopg.connect(url, autocommit=True)
        return c

    def endpoint(sqls: list[str]) -> Any:
        def handle(request: Request) -> Response:  # a plain def: Starlette runs it in its thread pool
            t0 = time.perf_counter()
            cur = conn().cursor()
            results = []
            for sql in sqls:
                cur.execute(sql)
                results.append(cur.fetchall())
            body = json.dumps({"results": results}, default=str)
            ms = (time.perf_counter() - t0) * 1000
            return Response(
                body, media_type="application/json", headers={"server-timing": f"app;dur={ms:.3f}"}
            )

        return handle

    app = Starlette(routes=[Route(path, endpoint(sqls)) for path, sqls in statements.items()])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

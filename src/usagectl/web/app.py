"""The ASGI app: `create_app(settings)` wires the store, the verifier, the routes, the error handlers and the
response headers. `app_from_env()` is uvicorn's factory for `usagectl serve` (each worker process builds its own
app from the config file named by $USAGECTL_CONFIG)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagectl import __version__
from usagectl.config import Config
from usagectl.store.engine import Store
from usagectl.web.auth import AuthError, ForbiddenError, make_verifier
from usagectl.web.context import ApiError, AppContext

access_logger = logging.getLogger("usagectl.access")

# Tenant data must never sit in a shared cache; a JSON body must never be sniffed into something else.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"private, no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
WWW_AUTHENTICATE = 'Bearer realm="usagectl"'


@dataclass
class ServeSettings:
    config: Config
    store: Store | None = None  # None: opened from the config's database URL
    access_log: bool = True


def error_body(message: str, parameter: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    body.update(extra)
    return body


class HeadersAndAccessLog:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): adds SECURITY_HEADERS to every response and logs
    one access line per request: method, path WITHOUT the query string, status, time. No header is logged, so
    no credential can leak into the log."""

    def __init__(self, app: ASGIApp, *, log: bool) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                # Server-Timing: the app's own time up to the response head, for clients and bench_serve.py.
                timing = f"app;dur={(time.perf_counter() - started) * 1000:.2f}".encode()
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in SECURITY_HEADERS if k not in names),
                    (b"server-timing", timing),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if self.log:
                access_logger.info(
                    '%s "%s %s" %d %.1fms',
                    (scope.get("client") or ("-",))[0],
                    scope.get("method", "-"),
                    scope.get("path", "-"),
                    status,
                    (time.perf_counter() - started) * 1000,
                )


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    parameter = loc[-1] if loc else None
    where = loc[0] if loc else "request"
    # The submitted value is not echoed: a mistyped credential in a query string must not come back.
    detail = [
        {
            "parameter": str(e.get("loc", ("",))[-1]),
            "in": str(e.get("loc", ("",))[0]),
            "message": e.get("msg", ""),
        }
        for e in errors
    ]
    return JSONResponse(
        error_body(
            f"invalid {where} parameter {parameter!r}: {first.get('msg', 'invalid')}",
            parameter,
            detail=detail,
        ),
        status_code=422,
    )


def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.message, exc.parameter), status_code=exc.status)


def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    has_credential = "authorization" in request.headers
    challenge = WWW_AUTHENTICATE + (', error="invalid_token"' if has_credential else "")
    return JSONResponse(error_body(str(exc)), status_code=401, headers={"WWW-Authenticate": challenge})


def _forbidden(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body(str(exc) or "forbidden"), status_code=403)


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    # Runs outside HeadersAndAccessLog (Starlette's outermost layer), so it sets the headers itself. A database
    # that is down or restarting is the server's condition, not a bug: 503, so a load balancer retries elsewhere.
    from sqlalchemy.exc import DBAPIError, OperationalError

    headers = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return JSONResponse(error_body("database unavailable"), status_code=503, headers=headers)
    logging.getLogger("usagectl.web").error("unexpected %s", type(exc).__name__, exc_info=exc)
    return JSONResponse(error_body("internal error"), status_code=500, headers=headers)


def _pool_capacity(store: Store) -> int | None:
    """Connections the engine's pool can hand out at once; None when it has no limit."""
    pool = store.engine.pool
    size = getattr(pool, "size", None)
    if not callable(size):
        return None
    return max(1, int(size()) + max(0, int(getattr(pool, "_max_overflow", 0))))


def create_app(settings: ServeSettings) -> FastAPI:
    """The app over one store: the JSON API (usagectl.web.api) and the HTML pages (usagectl.web.routes)."""
    from usagectl.web import api, ingest, routes
    from usagectl.web.session import session_secret

    store = settings.store
    if store is None:
        from usagectl.store.engine import open_store

        store = open_store(settings.config.database_url())
    ctx = AppContext(
        settings.config,
        store,
        make_verifier(settings.config.serve.auth, store),
        session_secret(settings.config.serve),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in anyio's thread pool (40 threads by default). More threads than the engine has
        # connections would make the extra requests wait for a connection and fail after pool_timeout under load:
        # run at most as many as the pool holds, the rest queue for a thread.
        import anyio.to_thread

        capacity = _pool_capacity(store)
        if capacity is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = capacity
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="usagectl usage API",
        version=__version__,
        description=(
            "Per-tenant usage and estimated cost. Tenant admins read their own tenant; root admins read every "
            "tenant. Money is a decimal string in USD. Send `Authorization: Bearer <token>`."
        ),
    )
    app.state.ctx = ctx
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(ForbiddenError, _forbidden)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(api.router)
    app.include_router(ingest.router)
    app.include_router(routes.router)
    app.add_middleware(HeadersAndAccessLog, log=settings.access_log)
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory: the config from $USAGECTL_CONFIG (set by `usagectl serve`), the database from it."""
    import os
    from pathlib import Path

    from usagectl import config as cfgmod

    path = os.environ.get(cfgmod.ENV_CONFIG)
    cfg = cfgmod.load(cfgmod.discover(Path(path) if path else None))
    access_log = os.environ.get("USAGECTL_SERVE_ACCESS_LOG", "1") == "1"
    return create_app(ServeSettings(cfg, access_log=access_log))

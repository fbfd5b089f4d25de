"""What every route of `usagectl serve` depends on, below both the JSON API (api.py) and the pages (routes.py), so
that neither imports the module that assembles the app (app.py)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from usagectl.config import Config
from usagectl.store.engine import Store
from usagectl.web.auth import Verifier


@dataclass
class AppContext:
    """What a route needs: set on `app.state.ctx` by create_app."""

    config: Config
    store: Store
    verifier: Verifier
    session_secret: bytes = b""  # signs the pages' session cookies and CSRF tokens (usagectl.web.session)


class ApiError(Exception):
    """A client error with a JSON body naming the offending parameter."""

    def __init__(self, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter


def app_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx

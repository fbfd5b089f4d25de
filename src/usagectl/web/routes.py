"""The HTML pages over HTTP: /admin/billing-usage (+ .csv), /admin/system-usage, /signin, /signout and the
stylesheet. The pages themselves are pure functions (usagectl.web.pages); this module authenticates, builds the
report, and sends the HTML with its headers (a strict CSP, no caching).

Who is looking: in token mode a signed session cookie (usagectl.web.session) made by the sign-in form; in JWT
mode the platform's JWT from `[serve.auth] jwt_cookie` or the Authorization header. Errors are pages too: not
signed in -> a redirect to /signin (token mode) or a 401 page (JWT mode); a bad parameter -> 400 naming it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from usagectl.config import SLUG_BODY
from usagectl.errors import InputError
from usagectl.periods import Window, utc_today
from usagectl.reports import estimated_costs, ranking_rows, tenant_report, tenants_report
from usagectl.web import pages
from usagectl.web.auth import AuthError, ForbiddenError, Principal, principal_of
from usagectl.web.context import AppContext, app_context
from usagectl.web.session import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
    csrf_ok,
    csrf_token,
    new_csrf_cookie,
    read_session,
    sign_session,
)

router = APIRouter(include_in_schema=False)

PAGE_DAYS = 30
MAX_FORM_BYTES = 4096
_SLUG_RE = re.compile(SLUG_BODY)


@dataclass
class Viewer:
    """Who is looking at a page (None: nobody signed in) and the request's CSRF cookie."""

    who: Principal | None
    csrf_cookie: str
    new_csrf: bool  # the CSRF cookie is new: set it on the response
    stale_session: bool  # a session cookie came in but is no longer good: clear it


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _secure(request: Request) -> bool:
    # uvicorn runs with proxy_headers: behind a trusted proxy (forwarded_allow_ips) X-Forwarded-Proto sets this.
    return request.url.scheme == "https"


def page_headers(ctx: AppContext) -> dict[str, str]:
    frame = ctx.config.serve.frame_ancestors
    headers = {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            f"frame-ancestors {frame}; base-uri 'none'"
        ),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if frame.strip() == "'none'":
        headers["X-Frame-Options"] = "DENY"  # for browsers without CSP frame-ancestors
    return headers


def _viewer(request: Request, ctx: AppContext) -> Viewer:
    """Runs in the thread pool (it may read the token table)."""
    csrf = request.cookies.get(CSRF_COOKIE) or ""
    new_csrf = not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", csrf)
    if new_csrf:
        csrf = new_csrf_cookie()
    auth = ctx.config.serve.auth
    who: Principal | None = None
    stale = False
    if auth.mode == "jwt":
        credential = request.cookies.get(auth.jwt_cookie) if auth.jwt_cookie else None
        header = request.headers.get("authorization", "")
        if not credential and header[:7].lower() == "bearer ":
            credential = header[7:].strip()
        if credential:
            who = ctx.verifier.verify(credential)  # AuthError / ForbiddenError: the caller's page
        return Viewer(who, csrf, new_csrf, False)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        from usagectl.store.sessions import session_scope

        session = read_session(ctx.session_secret, cookie)
        scope = session_scope(ctx.store, session.sid) if session else None
        # An ingest token reads nothing: a session that names one is no session.
        if scope is None or scope.is_ingest:
            stale = True
        else:
            who = principal_of(scope)
    return Viewer(who, csrf, new_csrf, stale)


def _page_context(
    request: Request, ctx: AppContext, viewer: Viewer, tenant: str | None = None
) -> pages.PageContext:
    who = viewer.who
    role: pages.Role | None = None if who is None else ("root" if who.is_root else "tenant")
    return pages.PageContext(
        role=role,
        tenant=tenant if tenant is not None else (who.tenant if who else None),
        base_path=_base(request),
        csrf_token=csrf_token(ctx.session_secret, viewer.csrf_cookie),
        csrf_field=CSRF_FIELD,
        sign_out=ctx.config.serve.auth.mode == "tokens",
    )


def _finish(request: Request, ctx: AppContext, viewer: Viewer, response: Response) -> Response:
    secure = _secure(request)
    if viewer.new_csrf:
        response.set_cookie(
            CSRF_COOKIE, viewer.csrf_cookie, httponly=True, samesite="strict", secure=secure, path="/"
        )
    if viewer.stale_session:
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=secure, path="/")
    return response


def _html(ctx: AppContext, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=page_headers(ctx))


def _error(
    request: Request, ctx: AppContext, viewer: Viewer, status: int, heading: str, message: str
) -> Response:
    page = pages.render_error(_page_context(request, ctx, viewer), heading=heading, message=message)
    return _finish(request, ctx, viewer, _html(ctx, page, status))


def _not_signed_in(request: Request, ctx: AppContext, viewer: Viewer, message: str | None = None) -> Response:
    if ctx.config.serve.auth.mode == "tokens":
        target = _base(request) + pages.SIGN_IN_PATH
        return _finish(request, ctx, viewer, RedirectResponse(target, status_code=303))
    return _error(
        request,
        ctx,
        viewer,
        401,
        "Not signed in",
        message or "Open this page from the platform's admin area.",
    )


def _who(request: Request, ctx: AppContext) -> tuple[Viewer, Response | None]:
    try:
        viewer = _viewer(request, ctx)
    except (AuthError, ForbiddenError) as exc:
        viewer = Viewer(None, new_csrf_cookie(), True, False)
        if isinstance(exc, ForbiddenError):
            return viewer, _error(request, ctx, viewer, 403, "Not allowed", str(exc))
        return viewer, _not_signed_in(request, ctx, viewer, str(exc))
    if viewer.who is None:
        return viewer, _not_signed_in(request, ctx, viewer)
    return viewer, None


Ctx = Annotated[AppContext, Depends(app_context)]


@router.get(pages.BILLING_PATH)
def billing_usage(request: Request, ctx: Ctx) -> Response:
    return _billing(request, ctx, csv=False)


@router.get(pages.BILLING_PATH + ".csv")
def billing_usage_csv(request: Request, ctx: Ctx) -> Response:
    return _billing(request, ctx, csv=True)


def _billing(request: Request, ctx: AppContext, *, csv: bool) -> Response:
    viewer, refused = _who(request, ctx)
    if refused is not None:
        return refused
    who = viewer.who
    assert who is not None
    asked = request.query_params.get("tenant")
    if asked is not None and not _SLUG_RE.fullmatch(asked):
        return _error(request, ctx, viewer, 400, "Bad request", "tenant: not a tenant slug")
    if who.is_root:
        if not asked:
            target = _base(request) + pages.SYSTEM_PATH
            return _finish(request, ctx, viewer, RedirectResponse(target, status_code=303))
        slug = asked
    else:
        assert who.tenant is not None
        # Another tenant's page: 403 whether or not it exists, so the answer does not tell.
        if asked and asked != who.tenant:
            page = pages.render_forbidden(_page_context(request, ctx, viewer))
            return _finish(request, ctx, viewer, _html(ctx, page, 403))
        slug = who.tenant
    today = utc_today()
    try:
        asked_month = pages.page_month(request.query_params.get("month"), today)
    except InputError as exc:
        return _error(request, ctx, viewer, 400, "Bad request", str(exc))
    month = asked_month or Window.month(today.year, today.month)
    window = pages.month_window(month, today)
    pctx = _page_context(request, ctx, viewer, slug)
    try:
        report = tenant_report(ctx.store, ctx.config, slug, window, today=today)
    except InputError:
        return _error(request, ctx, viewer, 404, "Unknown tenant", f"tenant: no tenant {slug!r}")
    if csv:
        headers = page_headers(ctx)
        name = f"{slug}-usage-{month.start:%Y-%m}.csv"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        body = pages.billing_usage_csv(report, pages.audience(pctx))
        response: Response = Response(body, media_type="text/csv; charset=utf-8", headers=headers)
        return _finish(request, ctx, viewer, response)
    # The charts stay on the last PAGE_DAYS days whatever the month shown.
    chart_report = tenant_report(ctx.store, ctx.config, slug, Window.last_days(PAGE_DAYS, today), today=today)
    page = pages.render_billing_usage(report, pctx, chart_report=chart_report, today=today)
    return _finish(request, ctx, viewer, _html(ctx, page))


@router.get(pages.SYSTEM_PATH)
def system_usage(request: Request, ctx: Ctx) -> Response:
    return _system(request, ctx, csv=False)


@router.get(pages.SYSTEM_PATH + ".csv")
def system_usage_csv(request: Request, ctx: Ctx) -> Response:
    return _system(request, ctx, csv=True)


def _system(request: Request, ctx: AppContext, *, csv: bool) -> Response:
    viewer, refused = _who(request, ctx)
    if refused is not None:
        return refused
    pctx = _page_context(request, ctx, viewer)
    if pctx.role != "root":
        page = pages.render_forbidden(pctx, message="The System Usage page is for root admins.")
        return _finish(request, ctx, viewer, _html(ctx, page, 403))
    today = utc_today()
    try:
        query = pages.SystemUsageQuery.from_params(
            request.query_params, default_month=pages.system_default_month(today)
        )
    except InputError as exc:
        return _error(request, ctx, viewer, 400, "Bad request", str(exc))
    if csv:
        headers = page_headers(ctx)
        headers["Content-Disposition"] = f'attachment; filename="tenants-{query.month.start:%Y-%m}.csv"'
        rows = ranking_rows(ctx.store, query.month, sort=query.sort, cfg=ctx.config, today=today)
        body = pages.system_usage_csv(rows, query, priced=True)
        return _finish(
            request, ctx, viewer, Response(body, media_type="text/csv; charset=utf-8", headers=headers)
        )
    # A page of the ranking, as the API's: the database sorts, filters and pages.
    report = tenants_report(
        ctx.store, query.month, sort=query.sort, limit=query.limit, offset=query.offset, query=query.q,
        cfg=ctx.config, today=today,
    )  # fmt: skip
    previous = None
    if query.month.start > date.min:
        # The month before, for the page's tenants only.
        previous = estimated_costs(
            ctx.store, pages.previous_month(query.month), [t.slug for t in report.lines]
        )
    page = pages.render_system_usage(report, query, pctx, previous=previous, today=today)
    return _finish(request, ctx, viewer, _html(ctx, page))


@router.get("/static/" + pages.STYLESHEET)
def stylesheet() -> Response:
    return FileResponse(
        pages.STATIC_DIR / pages.STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (None when it is not one, or too large)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}


def _sign_in_page(
    request: Request, ctx: AppContext, viewer: Viewer, status: int = 200, error: str | None = None
) -> Response:
    page = pages.render_sign_in(_page_context(request, ctx, viewer), error=error)
    return _finish(request, ctx, viewer, _html(ctx, page, status))


def _jwt_has_no_form(request: Request, ctx: AppContext) -> Response:
    viewer = Viewer(None, new_csrf_cookie(), True, False)
    return _error(
        request,
        ctx,
        viewer,
        404,
        "No sign-in here",
        "Sign in to the platform and open this page from its admin area.",
    )


@router.get(pages.SIGN_IN_PATH)
def sign_in_form(request: Request, ctx: Ctx) -> Response:
    if ctx.config.serve.auth.mode != "tokens":
        return _jwt_has_no_form(request, ctx)
    viewer = _viewer(request, ctx)
    if viewer.who is not None:  # already signed in
        return _finish(request, ctx, viewer, RedirectResponse(_home(request, viewer.who), status_code=303))
    return _sign_in_page(request, ctx, viewer)


def _home(request: Request, who: Principal) -> str:
    return _base(request) + (pages.SYSTEM_PATH if who.is_root else pages.BILLING_PATH)


@router.post(pages.SIGN_IN_PATH)
async def sign_in(request: Request, ctx: Ctx) -> Response:
    if ctx.config.serve.auth.mode != "tokens":
        return _jwt_has_no_form(request, ctx)
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    viewer = Viewer(None, cookie or new_csrf_cookie(), not cookie, False)
    form = await _form(request)
    if form is None:
        return _sign_in_page(request, ctx, viewer, 400, "The form could not be read; try again.")
    if not csrf_ok(ctx.session_secret, cookie or None, form.get(CSRF_FIELD)):
        viewer = Viewer(None, new_csrf_cookie(), True, False)
        return _sign_in_page(request, ctx, viewer, 403, "The form expired; sign in again.")
    token = form.get("token", "").strip()

    def check() -> tuple[Principal, str, int] | None:
        from usagectl.store.sessions import open_session
        from usagectl.store.tokens import token_expiry, verify_token

        scope = verify_token(ctx.store, token)
        if scope is None or scope.is_ingest:
            return None
        expires = int(time.time()) + ctx.config.serve.session_hours * 3600
        token_expires = token_expiry(ctx.store, scope.prefix)
        if token_expires is not None:
            expires = min(expires, int(token_expires.timestamp()))
        sid = open_session(ctx.store, scope.prefix, datetime.fromtimestamp(expires, UTC))
        if sid is None:  # the token was deleted in between
            return None
        return principal_of(scope), sid, expires

    found = await run_in_threadpool(check) if token else None
    if found is None:
        return _sign_in_page(
            request, ctx, viewer, 401, "That token is not valid (unknown, expired or revoked)."
        )
    who, sid, expires = found
    response = RedirectResponse(_home(request, who), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sign_session(ctx.session_secret, Session(sid, expires)),
        max_age=max(1, expires - int(time.time())),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    # A new CSRF cookie with the new session: a token read before signing in is worth nothing after.
    response.set_cookie(
        CSRF_COOKIE, new_csrf_cookie(), httponly=True, samesite="strict", secure=_secure(request), path="/"
    )
    for k, v in page_headers(ctx).items():
        response.headers[k] = v
    return response


@router.post(pages.SIGN_OUT_PATH)
async def sign_out(request: Request, ctx: Ctx) -> Response:
    if ctx.config.serve.auth.mode != "tokens":
        return _jwt_has_no_form(request, ctx)
    form = await _form(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    if form is None or not csrf_ok(ctx.session_secret, cookie, form.get(CSRF_FIELD)):
        viewer = Viewer(None, cookie or new_csrf_cookie(), cookie is None, False)
        return _error(
            request, ctx, viewer, 403, "Not allowed", "The form expired; reload the page and try again."
        )
    # The session ends on the server, not only in this browser: a copy of the cookie opens nothing afterwards.
    session = read_session(ctx.session_secret, request.cookies.get(SESSION_COOKIE) or "")
    if session is not None:
        from usagectl.store.sessions import end_session

        await run_in_threadpool(end_session, ctx.store, session.sid)
    target = _base(request) + pages.SIGN_IN_PATH
    response = RedirectResponse(target, status_code=303)
    secure = _secure(request)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=secure, path="/")
    response.delete_cookie(CSRF_COOKIE, httponly=True, samesite="strict", secure=secure, path="/")
    for k, v in page_headers(ctx).items():
        response.headers[k] = v
    return response

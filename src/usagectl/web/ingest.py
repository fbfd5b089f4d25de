"""POST /api/events: the platform's services push usage events over HTTP, as `usagectl ingest` reads them from a
file. Authenticated by an ingest token only (`usagectl token create --ingest`), whatever `[serve.auth].mode` is:
the services are machines, not signed-in admins. The validation, tenants, metrics and (source, id) deduplication
are events.py's (`store_events`); this module reads the body within its caps and answers per event."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from usagectl.events import ACCEPTED, DUPLICATE, REJECTED, StoredEvents
from usagectl.web.api import bearer
from usagectl.web.auth import AuthError, ForbiddenError, Principal, TokenVerifier
from usagectl.web.context import ApiError, AppContext, app_context

router = APIRouter()


def _too_large(message: str) -> ApiError:
    return ApiError(413, message)


async def _body(request: Request, cap: int) -> bytes:
    """The body, refused (413) as soon as it passes `cap` bytes: never read whole when it is too large."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _too_large(f"the body is {int(declared):,} bytes; at most {cap:,} ([serve] events_max_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _too_large(f"the body is more than {cap:,} bytes ([serve] events_max_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _items(body: bytes) -> tuple[list[Any], bool]:
    """(items, lines): a JSON array's decoded elements, or NDJSON's non-blank lines (each read like an ingested
    file's line, so a bad line is one rejected event and not a bad request)."""
    start = body.lstrip()[:1]
    if not start:
        raise ApiError(400, "empty body: send a JSON array of events or NDJSON (one event per line)")
    if start == b"[":
        try:
            decoded = json.loads(body)
        except UnicodeDecodeError:
            raise ApiError(400, "the body is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ApiError(
                400, f"the body is not a JSON array: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        except (RecursionError, ValueError):
            raise ApiError(
                400, "the body is not a JSON array (nested too deeply or a number too long)"
            ) from None
        if not isinstance(decoded, list):
            raise ApiError(400, "the body is not a JSON array")
        return decoded, False
    return [line for line in body.split(b"\n") if line.strip()], True


def ingest_principal(
    ctx: Annotated[AppContext, Depends(app_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise AuthError("missing credentials: send Authorization: Bearer <ingest token>")
    who = TokenVerifier(ctx.store).verify(credentials.credentials)
    if not who.is_ingest:
        raise ForbiddenError("POST /api/events takes an ingest token (usagectl token create --ingest)")
    return who


@router.post(
    "/api/events",
    tags=["ingest"],
    summary="Store usage events (JSON array or NDJSON); an answer per event",
    responses={
        200: {
            "description": "Every event answered: accepted, duplicate or rejected (with its index and reason)"
        },
        400: {"description": "The body is empty or not a JSON array / NDJSON"},
        401: {"description": "No valid token"},
        403: {"description": "Not an ingest token"},
        413: {"description": "Too many bytes or events; nothing stored"},
    },
)
async def post_events(
    request: Request,
    ctx: Annotated[AppContext, Depends(app_context)],
    _who: Annotated[Principal, Depends(ingest_principal)],
) -> Response:
    """The events `usagectl ingest` reads (`id`, `source`, `subject` = tenant slug, `type` = metric, `time`,
    `data.value`), as a JSON array or one per line. Valid events are stored in one transaction; an event whose
    (source, id) is already stored is a duplicate and changes nothing, so a retried request is harmless. A bad
    event is rejected alone. 200 whenever the body was read: check `rejected`."""
    from usagectl.events import metric_kinds, store_events

    serve = ctx.config.serve
    body = await _body(request, serve.events_max_bytes)
    items, lines = _items(body)
    if len(items) > serve.events_max_per_request:
        raise _too_large(
            f"{len(items):,} events; at most {serve.events_max_per_request:,} per request "
            "([serve] events_max_per_request)"
        )
    metrics = metric_kinds(ctx.config)
    stored = await run_in_threadpool(store_events, ctx.store, metrics, items, lines=lines)
    return Response(_answer(stored), media_type="application/json")


def _answer(stored: StoredEvents) -> bytes:
    """The JSON answer, one result per event; built by hand, since a request of thousands of events spent more
    time in a generic encoder than in storing them."""
    results = []
    for index, status in enumerate(stored.statuses):
        if status == REJECTED:
            results.append(json.dumps({"index": index, "status": status, "reason": stored.reasons[index]}))
        else:
            results.append(f'{{"index":{index},"status":"{status}"}}')
    head = json.dumps(
        {
            "received": len(stored.statuses),
            "accepted": stored.count(ACCEPTED),
            "duplicates": stored.count(DUPLICATE),
            "rejected": len(stored.reasons),
        }
    )
    return f'{head[:-1]}, "results": [{",".join(results)}]}}'.encode()

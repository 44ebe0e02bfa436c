"""``GET /audit`` (operator only): the audit trail, newest first, paginated, ``since=``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from serving import queries
from serving.deps import IsoDateTime
from serving.models import AuditEntry
from serving.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_cursor, encode_cursor
from serving.security import require_operator

router = APIRouter(tags=["security"], dependencies=[Depends(require_operator)])


@router.get("/audit", response_model=Page[AuditEntry], summary="Changing and refused requests, newest first")
def audit_trail(
    request: Request,
    since: Annotated[IsoDateTime | None, Query(description="Only entries at or after this time.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AuditEntry]:
    after = decode_cursor(cursor) if cursor else None
    start = queries.as_instant(since) if since else None
    items: list[AuditEntry] = []
    more = False
    for entry in request.app.state.audit.entries():  # newest first; stop reading once the page is full
        item = AuditEntry(**entry)
        if start is not None and item.time < start:
            break
        key = (queries.utc_text(item.time), item.id)
        if after is not None and key >= after:
            continue
        if len(items) == limit:
            more = True
            break
        items.append(item)
    next_cursor = encode_cursor((queries.utc_text(items[-1].time), items[-1].id)) if more and items else None
    return Page[AuditEntry](items=items, next_cursor=next_cursor, limit=limit)

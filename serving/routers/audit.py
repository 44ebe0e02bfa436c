"""``GET /audit`` (operator only): the audit trail, newest first, paginated, ``since=``.

A line that is not a valid entry (torn by a crash, edited by hand) is skipped, never a 500: the answer's
``X-Audit-Malformed-Lines`` header counts the ones passed over while reading the page, and the service log names
them (file and line)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError

from serving import queries
from serving.deps import IsoDateTime
from serving.models import AuditEntry
from serving.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_cursor, encode_cursor
from serving.security import require_operator

router = APIRouter(tags=["security"], dependencies=[Depends(require_operator)])
LOGGER = logging.getLogger("serving.audit")
MALFORMED_HEADER = "X-Audit-Malformed-Lines"


@router.get("/audit", response_model=Page[AuditEntry], summary="Changing and refused requests, newest first")
def audit_trail(
    request: Request,
    response: Response,
    since: Annotated[IsoDateTime | None, Query(description="Only entries at or after this time.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AuditEntry]:
    after = decode_cursor(cursor) if cursor else None
    start = queries.as_instant(since) if since else None
    items: list[AuditEntry] = []
    more = False
    malformed: list[str] = []
    for entry in request.app.state.audit.entries(malformed):  # newest first; stop reading once the page is full
        try:
            item = AuditEntry(**entry)
        except (ValidationError, TypeError):
            malformed.append(f"entry {str(entry.get('id', '?'))[:40]}")
            continue
        if start is not None and item.time < start:
            break
        key = (queries.utc_text(item.time), item.id)
        if after is not None and key >= after:
            continue
        if len(items) == limit:
            more = True
            break
        items.append(item)
    if malformed:
        response.headers[MALFORMED_HEADER] = str(len(malformed))
        LOGGER.warning("Skipped %d malformed audit line(s): %s", len(malformed), ", ".join(malformed[:20]))
    next_cursor = encode_cursor((queries.utc_text(items[-1].time), items[-1].id)) if more and items else None
    return Page[AuditEntry](items=items, next_cursor=next_cursor, limit=limit)

"""Keyset pagination for the lists: opaque cursors, page limits, and the bounds of row ids.

A cursor names the last row a page showed; one that does not decode, or that another list
gave out, raises `BadCursor` (a `ValueError`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from auditor.records import as_utc

MAX_LIMIT = 500
# Row ids are 32-bit on PostgreSQL (SERIAL), which refuses a larger number in a query: a
# larger id names no row.
MAX_ID = 2**31 - 1


class BadCursor(ValueError):
    """A `cursor` this API did not give out (the API answers 400)."""

    def __init__(self, cursor: str) -> None:
        super().__init__(f"cursor {cursor[:40]!r} is not one this list gave")


def _encode_cursor(kind: str, *parts: str | int) -> str:
    raw = json.dumps([kind, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str, shape: Sequence[type]) -> list[Any]:
    """The parts of a cursor `_encode_cursor(kind, ...)` made, checked against their types."""
    bad = BadCursor(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(parts, list)
        or len(parts) != len(shape) + 1
        or parts[0] != kind
        or not all(type(p) is t for p, t in zip(parts[1:], shape, strict=True))
        or any(type(p) is int and not 0 <= p <= MAX_ID + 1 for p in parts)
        or not _storable(*(p for p in parts if type(p) is str))
    ):
        raise bad
    return parts[1:]


def _time_cursor(cursor: str, kind: str, key: type) -> tuple[datetime, Any]:
    """(round start, id) of the last row shown, for lists ordered by round time."""
    when, last = _decode_cursor(cursor, kind, (str, key))
    try:
        at = datetime.fromisoformat(when)
        return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)), last
    except (ValueError, OverflowError):
        raise BadCursor(cursor) from None


def _storable(*texts: str | None) -> bool:
    """False when a text cannot be in the database, so cannot match: PostgreSQL refuses
    NUL characters in a query's parameters (and no stored name or id holds one)."""
    return not any(t is not None and "\x00" in t for t in texts)


def _utc_text(value: datetime) -> str:
    return as_utc(value).isoformat()


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _before(
    time_col: ColumnElement[Any], key_col: ColumnElement[Any], at: datetime, key: str | int
) -> ColumnElement[bool]:
    """Rows after (at, key) in a newest-first order on (time_col, key_col)."""
    return or_(time_col < at, and_(time_col == at, key_col < key))

"""Cursor pagination shared by the node's lists: newest first by ULID id."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

T = TypeVar("T")


def newest_first(
    session: Session,
    statement: SelectOfScalar[T],
    id_column: InstrumentedAttribute[Any],
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[T], str | None]:
    """One page and the cursor of the next (the last id returned), or None at the end.

    ULIDs sort by creation time, so ordering by id is ordering by age without a tie-break.
    """
    if cursor:
        statement = statement.where(col(id_column) < cursor)
    rows = list(session.exec(statement.order_by(col(id_column).desc()).limit(limit + 1)))
    next_cursor = getattr(rows[limit - 1], id_column.key) if len(rows) > limit else None
    return rows[:limit], next_cursor

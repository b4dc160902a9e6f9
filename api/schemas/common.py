"""Shapes shared by every resource: pages of results, free text."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

# Free text reaches Postgres, whose text cannot hold U+0000: it is refused (422) before any query sees it.
NO_NUL = r"^[^\x00]*$"


class Page(BaseModel, Generic[T]):
    """One page of a list: `items`, the `total` matching, and the `limit` / `offset` used."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)

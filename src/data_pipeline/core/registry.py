"""A name -> object registry shared by every manager."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from data_pipeline.core.errors import DuplicateNameError, NotFoundError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Ordered registry of named items.

    Args:
        kind: what the items are, for messages (``"data source"``).
        owner: who holds the registry, for messages (``"DataIngestionManager"``).
    """

    def __init__(self, kind: str, owner: str) -> None:
        self.kind = kind
        self.owner = owner
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T, *, replace: bool = False) -> T:
        if not isinstance(name, str) or not name:
            raise DuplicateNameError(
                f"a {self.kind} needs a non-empty string name, got {name!r}", component=self.owner
            )
        if name in self._items and not replace:
            raise DuplicateNameError(
                f"a {self.kind} named {name!r} is already registered",
                component=self.owner,
                hint=f"choose another name, or remove {name!r} first",
            )
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None

    def remove(self, name: str) -> T:
        item = self.get(name)
        del self._items[name]
        return item

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def _unknown(self, name: object) -> NotFoundError:
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        hint += (
            f"known {self.kind}s: {', '.join(map(repr, known))}"
            if known
            else (f"no {self.kind} is registered yet")
        )
        return NotFoundError(f"unknown {self.kind} {name!r}", component=self.owner, hint=hint)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

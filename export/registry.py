"""A tiny named registry whose misses fail loudly and list the valid names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from export.errors import ExportError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: list[Callable[[], Iterable[tuple[str, T]]]] = []

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove a registered name (e.g. a test's temporary model); unknown names fail loudly."""
        item = self.get(name)
        del self._items[name]
        return item

    def add_source(self, source: Callable[[], Iterable[tuple[str, T]]]) -> None:
        """Names that are only known after an expensive import (e.g. torchvision)."""
        self._lazy.append(source)

    def _resolve(self) -> None:
        while self._lazy:
            for name, item in self._lazy.pop(0)():
                self._items.setdefault(name, item)

    def names(self) -> list[str]:
        self._resolve()
        return sorted(self._items)

    def get(self, name: str, where: str = "") -> T:
        if name not in self._items:
            self._resolve()
        try:
            return self._items[name]
        except KeyError:
            at = f" ({where})" if where else ""
            raise ExportError(
                f"unknown {self.kind} {name!r}{at}; valid {self.kind}s: {', '.join(self.names())}"
            ) from None

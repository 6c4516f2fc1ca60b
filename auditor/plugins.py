"""A tiny registry shared by every plugin kind.

Plugins are found through Python entry points (group `auditor.<kind>`): the built-ins are
declared in this project's pyproject.toml exactly as a third-party package would declare its
own, and each registers itself with the `register` decorator when its module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

Plugin = TypeVar("Plugin")


class Registry(Generic[Plugin]):
    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, type[Plugin]] = {}
        self._loaded = group is None

    def register(self, name: str) -> Callable[[type[Plugin]], type[Plugin]]:
        def add(cls: type[Plugin]) -> type[Plugin]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = cls
            return cls

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            ep.load()

    def get(self, name: str) -> type[Plugin]:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, type[Plugin]]]:
        self._load()
        return sorted(self._items.items())

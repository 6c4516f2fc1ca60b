"""A tiny registry shared by every plugin kind.

Plugins are found through Python entry points (group `auditor.<kind>`): the built-ins are
declared in this project's pyproject.toml exactly as a third-party package would declare its
own, and each registers itself when its module is imported: a class with the `register`
decorator (adapters, scorers, comparisons), a value with `add` (diagnosis rules).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

Plugin = TypeVar("Plugin")


class Registry(Generic[Plugin]):
    """Named plugins of one kind: classes (`Registry[type[Scorer]]`) or values
    (`Registry[Rule]`), in the order they were registered."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, Plugin] = {}
        self._loaded = group is None

    def add(self, name: str, item: Plugin) -> Plugin:
        """Register `item` under `name`; registering the same item twice is harmless."""
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        """Forget `name` (a plugin being reloaded, or a test cleaning up after itself)."""
        self._items.pop(name, None)

    def register(self, name: str) -> Callable[[Plugin], Plugin]:
        """A decorator: `@registry.register("name")` over a class (or function)."""

        def add(item: Plugin) -> Plugin:
            return self.add(name, item)

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.group is not None:  # a registry without a group has nothing to load
            for ep in entry_points(group=self.group):
                ep.load()

    def get(self, name: str) -> Plugin:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, Plugin]]:
        self._load()
        return sorted(self._items.items())

    def values(self) -> list[Plugin]:
        """Every plugin, in registration order."""
        self._load()
        return list(self._items.values())

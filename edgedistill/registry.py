"""One small registry: the strings users type -> implementations.

Used for data sets, model presets, distillation losses and benchmark targets, so every
"unknown name" error has the same shape and lists the valid names.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgedistill.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of implementations.

    Example::

        presets = Registry("model preset")

        @presets.register("cnn")
        def build_cnn(...): ...

        presets.get("cnn")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def add(self, name: str, item: T) -> T:
        return self.register(name)(item)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise InputError(f"Unknown {self.kind} {name!r}. Expected one of: {', '.join(self.names())}.") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self.names()]


__all__ = ["Registry"]

"""One registry pattern for the four name -> builder tables (models, backbones, gaze estimators,
forgers), as timm and open_clip do: a decorator registers, the step's `create_*` builds by name,
its `list_*` lists, and an unknown name raises one error type that names the known ones.

    BACKBONES = Registry("backbone")

    @BACKBONES.register("tiny-random")
    def _tiny(clip=None): ...

    BACKBONES["tiny-random"]    # the builder; BACKBONES["nope"] raises UnknownNameError
    BACKBONES.names()           # sorted (or in registration order, sort=False)
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Callable, Generic, TypeVar

from .errors import UsageError

T = TypeVar("T")


class UnknownNameError(UsageError, KeyError):
    """A name no registry holds: a user error (one line at the command line), and a KeyError (a
    lookup) and a ValueError (a bad argument), so callers written for either keep working; its text
    names the known names."""

    def __init__(self, kind: str, name: str, known: list[str], plural: str | None = None):
        self.kind, self.name, self.known = kind, name, list(known)
        super().__init__(f"unknown {kind} {name!r}; known {plural or kind + 's'}: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class Registry(Mapping, Generic[T]):
    """A read-only mapping name -> registered object, filled by `register`."""

    def __init__(self, kind: str, plural: str | None = None, sort: bool = True):
        self.kind, self.plural, self.sort = kind, plural, sort
        self._items: dict[str, T] = {}
        self.help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: `@REG.register("name")` keeps the decorated object under `name`."""
        def deco(obj: T) -> T:
            self.add(name, obj, help)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "") -> None:
        self._items[name] = obj
        self.help[name] = help

    def names(self) -> list[str]:
        return sorted(self._items) if self.sort else list(self._items)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names(), self.plural) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

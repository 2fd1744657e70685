"""Name → class registries filled by a decorator (lm-evaluation-harness style).

Each of ``tasks``, ``methods``, ``filters`` and ``backends`` owns one ``REGISTRY`` dict, filled
by importing every module of its package (``import_all``): adding a component is one file plus
one ``@register(...)`` line, with no import list to keep in step.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sys2distill.errors import UserError

T = TypeVar("T")


def make_register(registry: dict[str, type], kind: str, base: type | None = None,
                  required: tuple[str, ...] = ()) -> Callable[[str], Callable[[type[T]], type[T]]]:
    """Return a decorator that files a class under a short name in ``registry``.

    ``required`` names what every ``kind`` must define; ``"a|b"`` asks for either. A name counts
    as defined when the class has it and it is not ``base``'s own stub, so a component missing,
    say, a method's report ``label`` fails at import instead of after hours of generation.
    """

    def register(name: str) -> Callable[[type[T]], type[T]]:
        def wrap(cls: type[T]) -> type[T]:
            if dict.__contains__(registry, name):  # a LazyRegistry also "contains" names not yet imported
                raise ValueError(f"{name!r} is registered twice ({registry[name]} and {cls})")
            missing = [r for r in required if not any(_defined(cls, base, a) for a in r.split("|"))]
            if missing:
                raise TypeError(f"{kind} {name!r} ({cls.__module__}.{cls.__qualname__}) does not define "
                                f"{missing[0].replace('|', ' or ')}: every {kind} needs {', '.join(required)}")
            registry[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return wrap

    return register


def _defined(cls: type, base: type | None, attr: str) -> bool:
    value = getattr(cls, attr, None)
    return value is not None and (base is None or value is not getattr(base, attr, None))


class LazyRegistry(dict):
    """A registry whose package is costly to import (the backends import torch and transformers).

    The names are read off the modules' decorator lines (``@register_backend("hf")``) without importing
    them, so listing them or rejecting an unknown one costs milliseconds; the module that registers a
    name is imported the first time that name is looked up. A module whose source cannot be read is
    imported at once, as is one whose decorator line the pattern cannot read.
    """

    def __init__(self, package: str, path: list[str], decorator: str):
        super().__init__()
        self._pending: dict[str, str] = {}  # name → module that registers it, not imported yet
        line = re.compile(rf"^@{re.escape(decorator)}\(\s*[\"']([^\"']+)[\"']\s*\)", re.M)
        for module in pkgutil.iter_modules(path):
            source = Path(getattr(module.module_finder, "path", "")) / f"{module.name}.py"
            if not source.is_file():
                importlib.import_module(f"{package}.{module.name}")
                continue
            text = source.read_text(encoding="utf-8")
            names = line.findall(text)
            if not names and f"@{decorator}" in text:  # a decorator this pattern cannot read: register it now
                importlib.import_module(f"{package}.{module.name}")
            for name in names:
                if name in self._pending:
                    raise ValueError(f"{decorator}: {name!r} is registered by both {self._pending[name]} and "
                                     f"{package}.{module.name}")
                self._pending[name] = f"{package}.{module.name}"

    def _load(self, name: str) -> None:
        module = self._pending.pop(name, None)
        if module is not None:
            importlib.import_module(module)

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or name in self._pending

    def __getitem__(self, name: str) -> type:
        self._load(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default=None):
        return self[name] if name in self else default

    def __iter__(self) -> Iterator[str]:
        return iter([*dict.keys(self), *(n for n in self._pending if not dict.__contains__(self, n))])

    def __len__(self) -> int:
        return len(list(iter(self)))

    def keys(self):
        return list(iter(self))

    def values(self):
        return [self[n] for n in self.keys()]

    def items(self):
        return [(n, self[n]) for n in self.keys()]


def import_all(package: str, path: list[str]) -> None:
    """Import every module of a package, so each one's ``@register`` line runs."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


def lookup(registry: dict[str, type], name: str, kind: str) -> type:
    """Fetch ``name`` or raise a ``UserError`` naming the closest registered one."""
    check_registered(registry, name, kind)
    return registry[name]


def check_registered(registry: dict[str, type], name: str, kind: str) -> None:
    """A ``UserError`` naming the closest registered name unless ``name`` is registered; imports nothing
    (a ``LazyRegistry`` knows its names before it imports their modules)."""
    if name in registry:
        return
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(f"unknown {kind} {name!r}: {hint}choose one of {', '.join(sorted(registry))}")

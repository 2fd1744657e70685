"""Name → class registries filled by a decorator (lm-evaluation-harness style).

Each of ``tasks``, ``methods``, ``filters`` and ``backends`` owns one ``REGISTRY`` dict; adding
a component is one file plus one ``@register(...)`` line.
"""

from __future__ import annotations

import difflib
from typing import Callable, TypeVar

from sys2distill.errors import UserError

T = TypeVar("T")


def make_register(registry: dict[str, type]) -> Callable[[str], Callable[[type[T]], type[T]]]:
    """Return a decorator that files a class under a short name in ``registry``."""

    def register(name: str) -> Callable[[type[T]], type[T]]:
        def wrap(cls: type[T]) -> type[T]:
            if name in registry:
                raise ValueError(f"{name!r} is registered twice ({registry[name]} and {cls})")
            registry[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return wrap

    return register


def lookup(registry: dict[str, type], name: str, kind: str) -> type:
    """Fetch ``name`` or raise a ``UserError`` naming the closest registered one."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(f"unknown {kind} {name!r}: {hint}choose one of {', '.join(sorted(registry))}")

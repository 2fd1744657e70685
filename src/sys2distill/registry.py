"""Name → class registries filled by a decorator (lm-evaluation-harness style).

Each of ``tasks``, ``methods``, ``filters`` and ``backends`` owns one ``REGISTRY`` dict, filled
by importing every module of its package (``import_all``): adding a component is one file plus
one ``@register(...)`` line, with no import list to keep in step.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Callable, TypeVar

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
            if name in registry:
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


def import_all(package: str, path: list[str]) -> None:
    """Import every module of a package, so each one's ``@register`` line runs."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


def lookup(registry: dict[str, type], name: str, kind: str) -> type:
    """Fetch ``name`` or raise a ``UserError`` naming the closest registered one."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(f"unknown {kind} {name!r}: {hint}choose one of {', '.join(sorted(registry))}")

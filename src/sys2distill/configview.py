"""A stage's view of the run config: the keys it declares and nothing else (STYLE lesson 13).

A stage's fingerprint is the values of the keys it declares, so a key it reads without declaring
would change its outputs without making a finished stage stale (issue 21, row 10: ``generate``
read the filter's threshold for adaptive stopping, undeclared). While a stage runs it sees the
config only through a ``ConfigView``: reading an undeclared key raises ``UndeclaredConfigKey``,
so the declaration is checked every time a stage runs, in the tests first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class UndeclaredConfigKey(RuntimeError):
    """A stage read a config key it does not declare: a bug in the stage's declaration, not a user mistake.

    Not an ``AttributeError``: ``getattr(view, key, default)`` and ``hasattr`` must not swallow it.
    """


def pick(dump: dict, dotted: str) -> Any:
    """The value at ``a.b.c`` in a nested config dump."""
    for k in dotted.split("."):
        dump = dump[k]
    return dump


class ConfigView:
    """Read-only access to the ``allowed`` dotted keys of a config (a key allows everything under it).

    A section of which only some keys are allowed is itself a view; a property (``distill.specs``,
    computed from ``distill.methods``) is computed through the view, so it may use allowed keys only.
    """

    def __init__(self, obj: BaseModel, allowed: frozenset[str], owner: str, prefix: str = ""):
        self._obj, self._allowed, self._owner, self._prefix = obj, allowed, owner, prefix

    def _access(self, path: str) -> str | None:
        """``"all"`` when ``path`` is allowed, ``"part"`` when only keys under it are, else None."""
        if any(path == a or path.startswith(a + ".") for a in self._allowed):
            return "all"
        return "part" if any(a.startswith(path + ".") for a in self._allowed) else None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle and the like probe private names: not config keys
            raise AttributeError(name)
        path = self._prefix + name
        access = self._access(path)
        if access == "all":
            return getattr(self._obj, name)
        if access == "part":
            return ConfigView(getattr(self._obj, name), self._allowed, self._owner, path + ".")
        prop = getattr(type(self._obj), name, None)
        if isinstance(prop, property):
            return prop.fget(self)
        raise UndeclaredConfigKey(f"the {self._owner} read config key {path!r}, which it does not declare: add it to its "
                                  "keys in its module's READS (sys2distill/stages/), or to neutral if it never changes the outputs")

    def model_dump(self) -> dict:
        """The allowed part of the config as nested plain data, in the config's own order."""
        def keep(dump: dict, prefix: str) -> dict:
            out = {}
            for k, v in dump.items():
                access = self._access(prefix + k)
                if access == "all":
                    out[k] = v
                elif access == "part":
                    out[k] = keep(v, prefix + k + ".")
            return out

        return keep(self._obj.model_dump(), self._prefix)

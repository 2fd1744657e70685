"""Unsupervised consistency filters; ``REGISTRY`` maps a short name to its class."""

from sys2distill.registry import make_register

REGISTRY: dict[str, type] = {}
register_filter = make_register(REGISTRY)

from sys2distill.filters import majority  # noqa: E402,F401  (fills REGISTRY)
from sys2distill.filters import usc  # noqa: E402,F401
from sys2distill.filters import perturbation_consistency  # noqa: E402,F401
from sys2distill.filters.base import Filter  # noqa: E402

__all__ = ["REGISTRY", "Filter", "register_filter"]

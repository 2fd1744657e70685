"""Unsupervised consistency filters; ``REGISTRY`` maps a short name to its class.

Every module of this package is imported, so a new filter is one file with ``@register_filter``.
"""

from sys2distill.filters.base import Filter
from sys2distill.registry import import_all, make_register

REGISTRY: dict[str, type] = {}
register_filter = make_register(REGISTRY, "filter", Filter, required=("decide|apply",))
import_all(__name__, __path__)

__all__ = ["REGISTRY", "Filter", "register_filter"]

"""System 1 and System 2 methods; ``REGISTRY`` maps a short name to its class.

Every module of this package is imported, so a new method is one file with ``@register_method``.
Chains (``methods/chain.py``) are not registered: each is named by its key under ``chains:``.
"""

from sys2distill.methods.base import Method
from sys2distill.registry import import_all, make_register

REGISTRY: dict[str, type] = {}
register_method = make_register(REGISTRY, "method", Method, required=("label", "run"))
import_all(__name__, __path__)

__all__ = ["REGISTRY", "Method", "register_method"]

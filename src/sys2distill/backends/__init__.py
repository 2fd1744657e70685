"""Generation backends; ``REGISTRY`` maps a short name (``hf``) to its class.

Every module of this package is imported (vLLM itself loads lazily), so a new backend is one
file with ``@register_backend``.
"""

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.registry import import_all, make_register

REGISTRY: dict[str, type] = {}
register_backend = make_register(REGISTRY, "backend", required=("generate",))
import_all(__name__, __path__)

__all__ = ["REGISTRY", "Backend", "SamplingParams", "register_backend"]

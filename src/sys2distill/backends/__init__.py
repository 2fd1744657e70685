"""Generation backends; ``REGISTRY`` maps a short name (``hf``) to its class.

A new backend is one file of this package with ``@register_backend``. The registry reads the names
off those lines and imports a backend's module (torch, transformers, an HTTP client) only when that
backend is used, so listing backends or checking a config's name costs no heavy import.
"""

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.registry import LazyRegistry, make_register

REGISTRY: dict[str, type] = LazyRegistry(__name__, __path__, "register_backend")
register_backend = make_register(REGISTRY, "backend", required=("generate",))

__all__ = ["REGISTRY", "Backend", "SamplingParams", "register_backend"]

"""Generation backends; ``REGISTRY`` maps a short name (``hf``) to its class."""

from sys2distill.registry import make_register

REGISTRY: dict[str, type] = {}
register_backend = make_register(REGISTRY)

from sys2distill.backends import hf, openai_compat, vllm_engine  # noqa: E402,F401  (fill REGISTRY; vLLM loads lazily)
from sys2distill.backends.base import Backend, SamplingParams  # noqa: E402

__all__ = ["REGISTRY", "Backend", "SamplingParams", "register_backend"]

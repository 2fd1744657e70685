"""System 1 and System 2 methods; ``REGISTRY`` maps a short name to its class."""

from sys2distill.registry import make_register

REGISTRY: dict[str, type] = {}
register_method = make_register(REGISTRY)

from sys2distill.methods import cot, rar_1step, rar_2step, system1  # noqa: E402,F401  (fills REGISTRY)
from sys2distill.methods import cot_fewshot  # noqa: E402,F401
from sys2distill.methods import s2a  # noqa: E402,F401
from sys2distill.methods import bsm  # noqa: E402,F401
from sys2distill.methods.base import Method  # noqa: E402

__all__ = ["REGISTRY", "Method", "register_method"]

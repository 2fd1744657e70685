"""Tasks; ``REGISTRY`` maps a short name (``last_letter``, ``coin_flip``) to its class."""

from sys2distill.registry import make_register

REGISTRY: dict[str, type] = {}
register_task = make_register(REGISTRY)

from sys2distill.tasks import coin_flip, last_letter  # noqa: E402,F401  (fills REGISTRY)
from sys2distill.tasks import gsm8k  # noqa: E402,F401
from sys2distill.tasks import sycophancy  # noqa: E402,F401
from sys2distill.tasks import pairwise_judge  # noqa: E402,F401
from sys2distill.tasks.base import Task  # noqa: E402

__all__ = ["REGISTRY", "Task", "register_task"]

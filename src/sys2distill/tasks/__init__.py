"""Tasks; ``REGISTRY`` maps a short name (``last_letter``, ``dataset``) to its class.

Every module of this package is imported, so a new task is one file with ``@register_task``.
"""

from sys2distill.registry import import_all, make_register
from sys2distill.tasks.base import Task

REGISTRY: dict[str, type] = {}
register_task = make_register(REGISTRY, "task", Task, required=("extraction_rule", "load", "extract_answer"))
import_all(__name__, __path__)

__all__ = ["REGISTRY", "Task", "register_task"]

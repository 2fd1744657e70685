"""Checks a run config passes before anything is imported, loaded or written: every name it uses is a
registered task, method, chain, filter and backend. The registries import no model code (the backends'
is read off their decorator lines, ``registry.LazyRegistry``), so a typo fails in well under a second."""

from __future__ import annotations

from sys2distill import backends, filters, methods, tasks
from sys2distill.config import RunConfig
from sys2distill.errors import UserError
from sys2distill.registry import check_registered, lookup


def method_names(cfg: RunConfig) -> set[str]:
    """Every method or chain a config names: distilled, evaluated, or given prompts or options."""
    return {*(s.method for s in cfg.distill.specs), *cfg.evaluate.systems, *cfg.prompts, *cfg.method_options}


def check_names(cfg: RunConfig) -> None:
    """A ``UserError`` naming the closest registered name for any unknown one in ``cfg``."""
    lookup(tasks.REGISTRY, cfg.task.name, "task")
    for name in cfg.chains:
        if name in methods.REGISTRY:
            raise UserError(f"chain {name!r} has the name of a built-in method: rename it under `chains:`")
    for m in {*cfg.prompts, *cfg.method_options} & set(cfg.chains):
        raise UserError(f"chain {m!r} has its prompts and options in its steps: edit them under `chains:`, not in "
                        "`prompts:` or `method_options:`")
    for m in method_names(cfg):
        lookup({**methods.REGISTRY, **cfg.chains}, m, "method or chain" if cfg.chains else "method")
    for f in [cfg.filter, *(s.filter for s in cfg.distill.specs if s.filter)]:
        lookup(filters.REGISTRY, f.name, "filter")
    check_registered(backends.REGISTRY, cfg.backend.name, "backend")

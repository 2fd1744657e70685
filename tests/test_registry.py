"""Registries fill themselves from their package's modules and refuse incomplete components at import."""

import sys

import pytest

from sys2distill.backends import register_backend
from sys2distill.filters import REGISTRY as FILTERS, register_filter
from sys2distill.filters.base import Filter
from sys2distill.methods import REGISTRY as METHODS, register_method
from sys2distill.methods.base import Method, SingleStepMethod
from sys2distill.registry import import_all
from sys2distill.tasks import REGISTRY as TASKS, register_task
from sys2distill.tasks.base import Task


def test_a_new_module_registers_itself(tmp_path, monkeypatch):
    """No import list: every module of the package is imported, so its decorator runs."""
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("FOUND = []\n")
    for name in ("alpha", "beta"):
        (pkg / f"{name}.py").write_text(f"from plugins import FOUND\nFOUND.append({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins

    import_all("plugins", plugins.__path__)
    assert sorted(plugins.FOUND) == ["alpha", "beta"]
    del sys.modules["plugins"], sys.modules["plugins.alpha"], sys.modules["plugins.beta"]


def test_every_shipped_module_is_registered():
    assert {"dataset", "gsm8k", "coin_flip", "last_letter", "sycophancy", "pairwise_judge"} <= set(TASKS)
    assert {"system1", "rar_1step", "rar_2step", "cot", "cot_fewshot", "s2a", "bsm"} <= set(METHODS)
    assert {"majority", "usc", "perturbation_consistency"} <= set(FILTERS)


@pytest.mark.parametrize("make, missing", [
    (lambda: register_method("no_label")(type("NoLabel", (SingleStepMethod,), {"PROMPTS": {"answer": "{question}"}})),
     "method 'no_label' .* does not define label"),
    (lambda: register_method("no_run")(type("NoRun", (Method,), {"label": "x"})),
     "method 'no_run' .* does not define run"),
    (lambda: register_task("no_rule")(type("NoRule", (Task,), {"load": lambda s, split: [], "extract_answer": lambda s, t: t})),
     "task 'no_rule' .* does not define extraction_rule"),
    (lambda: register_task("no_load")(type("NoLoad", (Task,), {"extraction_rule": "x", "extract_answer": lambda s, t: t})),
     "task 'no_load' .* does not define load"),
    (lambda: register_filter("no_vote")(type("NoVote", (Filter,), {})), "filter 'no_vote' .* does not define decide or apply"),
    (lambda: register_backend("no_generate")(type("NoGenerate", (), {"model_id": "x"})),
     "backend 'no_generate' .* does not define generate"),
])
def test_incomplete_components_fail_when_registered(make, missing):
    with pytest.raises(TypeError, match=missing):
        make()
    assert not {"no_label", "no_run", "no_rule", "no_load"} & {*METHODS, *TASKS}  # nothing half-registered

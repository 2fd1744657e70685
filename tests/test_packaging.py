"""The dependency bounds in pyproject.toml and the lower bounds CI installs (.ci/lower-bounds.txt) stay in step."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]


def test_ci_installs_exactly_the_declared_lower_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"]
                                                          + project["optional-dependencies"]["test"])}
    lines = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "lower-bounds.txt").read_text().splitlines()]
    pinned = {canonicalize_name(r.name): r for r in map(Requirement, filter(None, lines))}
    # The packages whose APIs the code calls by version-specific names (trainer, hf backend, cards, tracking).
    assert set(pinned) == {"torch", "transformers", "trl", "peft", "datasets", "accelerate", "huggingface-hub", "tensorboard"}
    for name, pin in pinned.items():
        (version,) = [Version(s.version) for s in pin.specifier if s.operator == "=="]
        lower = [Version(s.version) for s in declared[name].specifier if s.operator == ">="]
        assert lower == [version], f"{name}: pyproject says {declared[name].specifier}, .ci/lower-bounds.txt pins {version}"
        assert [s for s in declared[name].specifier if s.operator == "<"], f"{name} has no upper bound"

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
    assert set(pinned) == {"torch", "transformers", "trl", "peft", "datasets", "accelerate", "huggingface-hub", "tensorboard",
                           "scipy"}
    for name, pin in pinned.items():
        (version,) = [Version(s.version) for s in pin.specifier if s.operator == "=="]
        lower = [Version(s.version) for s in declared[name].specifier if s.operator == ">="]
        assert lower == [version], f"{name}: pyproject says {declared[name].specifier}, .ci/lower-bounds.txt pins {version}"
        assert [s for s in declared[name].specifier if s.operator == "<"], f"{name} has no upper bound"


def test_every_module_level_import_is_a_declared_dependency():
    """An import that works here only because another package pulled it in fails in CI's lower-bound venv."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    providers = packages_distributions()
    undeclared = {}
    for path in (ROOT / "src" / "sys2distill").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only: imports inside functions belong to extras
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - set(sys.stdlib_module_names) - {"sys2distill"}:
                dists = {canonicalize_name(d) for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    assert not undeclared, f"imported at module level but not in pyproject's dependencies: {undeclared}"

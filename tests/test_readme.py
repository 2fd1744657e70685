"""The README's run-folder table against what the stages declare and what a run writes."""

import fnmatch
import re
from pathlib import Path

import pytest

from sys2distill import rundir
from sys2distill.config import load_config
from sys2distill.pipeline import Pipeline
from sys2distill.stages import STAGE_READS, STAGES
from sys2distill.tasks.last_letter import LastLetter

README = Path(__file__).parents[1] / "README.md"


def table() -> dict[str, list[str]]:
    """Stage (or "(any)") → the glob patterns its row's "writes" cell names (``<x>`` → ``*``, ``dir/`` → ``dir/**``)."""
    text = README.read_text()
    start = text.index("| stage | what it does | writes (under `runs/<name>/`) |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        stage = cells[0].strip("`")
        paths = [re.sub(r"<[^>]+>", "*", p) for p in re.findall(r"`([^`]+)`", cells[2]) if "/" in p or "." in p]
        rows[stage] = [p + "**" if p.endswith("/") else p for p in paths if not p.startswith("distill.")
                       and not p.startswith("evaluate.") and not p.startswith("train.")]
    return rows


def covered(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name, p.replace("**", "*")) for p in patterns)


@pytest.fixture
def tiny(embedded_tokenizer, tiny_model, monkeypatch):
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
    return tiny_model(embedded_tokenizer), embedded_tokenizer


def test_the_readme_table_names_every_file_a_run_writes_under_the_stage_that_writes_it(tmp_path, tiny):
    rows = table()
    assert list(rows) == [*STAGES, "(any)"]
    for stage in STAGES:  # every path a stage declares is in its row
        for declared in STAGE_READS[stage].writes:
            assert any(p == declared or p.startswith(declared.rstrip("*")) for p in rows[stage]), (stage, declared)
    cfg = load_config(None, ["task.train_size=4", "task.test_size=2", "generation.num_samples=2", "generation.temperature=0",
                             "generation.max_tokens=4", "distill.methods=[system1,rar_2step]", "distill.controls=[shuffled,gold]",
                             "train.max_steps=1", "train.batch_size=2", "evaluate.systems=[system1,rar_2step]",
                             "evaluate.max_tokens=4", "evaluate.fidelity_samples=3", "evaluate.k_votes=[1,2]",
                             "route={holdout: 10}", "backend.batch_size=8", f"run_dir={tmp_path}/{{name}}"])
    p = Pipeline(cfg, loaded_base=tiny)
    p.run()
    recorded = set()
    for stage in STAGES:  # every file each stage's record lists is named in that stage's row
        files = rundir.read_record(p.dir, stage)["files"]
        recorded |= set(files)
        missing = [f for f in files if not covered(f, rows[stage])]
        assert not missing, (stage, missing)
    others = [f.relative_to(p.dir).as_posix() for f in p.dir.rglob("*") if f.is_file()]
    loose = [f for f in others if f not in recorded and not covered(f, rows["(any)"])
             and not any(covered(f, rows[s]) for s in STAGES)]
    assert not loose, loose  # nothing in the folder that the table does not name
    for kind in ("kvote_", "fidelity_", "control_", "distill_", "route_"):  # the optional files, present in this run ...
        assert any(f"evaluate/{kind}" in f for f in recorded), kind
    # ... and named as such (a generic evaluate/<system>.jsonl would cover them without saying what they are)
    cells = {line.split("|")[1].strip().strip("`"): line for line in README.read_text().splitlines()
             if line.startswith("| `") or line.startswith("| (any)")}
    for stage, name in [("evaluate", "evaluate/kvote_"), ("evaluate", "evaluate/fidelity_"), ("evaluate", "evaluate/route_"),
                        ("generate", "data/TASK.json"),
                        ("train", "SKIPPED.json"), ("train", "train/controls/"), ("report", rundir.PLOT),
                        ("(any)", rundir.BACKEND), ("(any)", rundir.CONFIG)]:
        assert name in cells[stage], (stage, name)

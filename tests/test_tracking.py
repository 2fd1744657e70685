"""train.report_to: the training curves and the run's stage timings and token counts in a real tracker.

TensorBoard is the tracker CI has: its event files are read back with TensorBoard's own reader.
"""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sys2distill.config import load_config
from sys2distill.errors import UserError
from sys2distill.pipeline import Pipeline
from sys2distill.records import Trace, read_records
from sys2distill.tasks.last_letter import LastLetter
from sys2distill.tracking import TENSORBOARD_DIR, Tracker, check_installed

OVERRIDES = ["task.train_size=4", "task.test_size=2", "generation.num_samples=2", "generation.temperature=0",
             "generation.max_tokens=4", "distill.methods=[rar_2step]", "train.max_steps=2", "train.batch_size=2",
             "backend.batch_size=8", "train.report_to=tensorboard"]


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_stage_metrics_and_training_curves_reach_tensorboard(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
    cfg = load_config(None, [*OVERRIDES, f"run_dir={tmp_path}/{{name}}"])
    p = Pipeline(cfg, loaded_base=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    p.run(stages=("generate", "filter", "train"))

    stages = scalars(p.dir / TENSORBOARD_DIR)
    for stage in ("generate", "filter", "train"):
        assert stages[f"stage_seconds/{stage}"] == [(0, pytest.approx(p.timings[stage]["seconds"]))]
        assert stages[f"peak_rss_gib/{stage}"][0][1] > 0
    generated = sum(t.tokens for t in read_records(p.dir / "generate" / "rar_2step.jsonl", Trace))
    assert generated > 0 and stages["generated_tokens/generate"] == [(0, generated)]
    assert stages["generated_tokens/filter"] == [(0, 0)]  # the majority vote generates nothing
    assert "generated_tokens/train" not in stages

    # The Trainer's own TensorBoard integration wrote the training curve next to the checkpoint.
    (run,) = (p.dir / "train" / "rar_2step" / "runs").iterdir()
    logged = [json.loads(line) for line in (p.dir / "train" / "rar_2step" / "train_log.jsonl").read_text().splitlines()]
    losses = [(e["step"], e["loss"]) for e in logged if "loss" in e]
    assert [(s, pytest.approx(v)) for s, v in scalars(run)["train/loss"]] == losses and len(losses) == 2


def test_report_to_is_not_part_of_the_train_fingerprint(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    """Where metrics go never changes a checkpoint: switching tracker keeps a finished train stage."""
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
    loaded = (tiny_model(embedded_tokenizer), embedded_tokenizer)
    cfg = load_config(None, [*OVERRIDES, f"run_dir={tmp_path}/{{name}}", "train.report_to=none"])
    Pipeline(cfg, loaded_base=loaded).run(stages=("generate", "filter", "train"))
    done = (cfg.path / "train" / "rar_2step" / "DONE.json").read_text()
    p = Pipeline(load_config(None, [*OVERRIDES, f"run_dir={tmp_path}/{{name}}"]), loaded_base=loaded)
    p.run(stages=("generate", "filter", "train"))
    assert (cfg.path / "train" / "rar_2step" / "DONE.json").read_text() == done and p.timings == {}


def test_only_rank_zero_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # torchrun starts one pipeline per process
    Tracker("tensorboard", tmp_path, "run").log({"x": 1.0})
    assert not (tmp_path / TENSORBOARD_DIR).exists()
    monkeypatch.setenv("RANK", "0")
    Tracker(["tensorboard"], tmp_path, "run").log({"x": 1.0})
    assert scalars(tmp_path / TENSORBOARD_DIR) == {"x": [(0, 1.0)]}


def test_a_missing_tracker_package_names_its_install(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    check_installed(["tensorboard"])
    with pytest.raises(UserError, match="train.report_to names wandb, which is not installed: pip install wandb"):
        check_installed(["tensorboard", "wandb"])


def test_an_unknown_tracker_is_a_config_error():
    with pytest.raises(UserError, match="train.report_to.*unknown tracker 'tensorbord' \\(did you mean 'tensorboard'\\?\\)"):
        load_config(None, ["train.report_to=tensorbord"])
    assert load_config(None, ["train.report_to=[tensorboard, mlflow]"]).train.report_to == ["tensorboard", "mlflow"]

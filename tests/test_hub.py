"""Model and dataset cards of a trained run, and `sys2distill push`'s upload plan and refusals (no network)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard

from sys2distill.config import dump_config, load_config
from sys2distill.errors import UserError
from sys2distill.hub import (EMBEDDED_HUB_ID, dataset_card_path, first_markdown_table, pick_entry, upload_plan,
                             write_model_cards)
from sys2distill.paper import BIBTEX, CITATION
from sys2distill.pipeline import Pipeline
from sys2distill.tasks.last_letter import LastLetter

ROOT = Path(__file__).parents[1]


def test_a_trained_run_has_cards_that_the_hub_library_reads(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
    cfg = load_config(None, ["task.train_size=4", "task.test_size=2", "generation.num_samples=2", "generation.temperature=0",
                             "generation.max_tokens=4", "distill.methods=[rar_2step]", "train.max_steps=2",
                             "train.batch_size=2", "evaluate.systems=[system1]", "evaluate.max_tokens=4",
                             "evaluate.fidelity_samples=0", "backend.batch_size=8", f"run_dir={tmp_path}/{{name}}"])
    base = tiny_model(embedded_tokenizer)
    base.config._model_name_or_path = "Smollm2 135M 8k Lc100K Mix1 Ep2"  # what the embedded GGUF's conversion carries
    p = Pipeline(cfg, loaded_base=(base, embedded_tokenizer))
    p.run(stages=("generate", "filter", "train"))
    checkpoint, data = p.dir / "train" / "rar_2step", p.dir / "distill" / "rar_2step.jsonl"

    # Written by the train stage, before any evaluation.
    card = ModelCard.load(checkpoint / "README.md")
    assert card.data.base_model == EMBEDDED_HUB_ID and card.data.library_name == "transformers"
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "text-generation"
    assert {"sys2distill", "rar_2step", "last_letter"} <= set(card.data.tags)
    assert card.data.model_name == "SmolLM2-135M-Instruct-sys2distill-rar_2step"
    assert "| System 2 method | `rar_2step` (RaR 2-step): 2 samples per unlabeled input" in card.text
    assert "| distillation data | 4 of 4 unlabeled inputs kept" in card.text
    assert "learning rate 0.0001, 2 steps, batch size 2 × 1 accumulation × 1 processes" in card.text
    assert "Not evaluated yet" in card.text and BIBTEX in card.text and CITATION in card.text
    # The checkpoint's config names the distilled model, not the GGUF's "Smollm2 135M 8k Lc100K Mix1 Ep2".
    assert json.loads((checkpoint / "config.json").read_text())["_model_name_or_path"] == card.data.model_name

    # The report stage refreshes the card with the run's results table.
    p.run()
    assert write_model_cards(p.dir, p.cfg) == [checkpoint / "README.md"]
    table = first_markdown_table((p.dir / "results.md").read_text())
    assert "Distilled RaR 2-step" in table
    card = ModelCard.load(checkpoint / "README.md")
    assert table in card.text and "Not evaluated yet" not in card.text

    dcard = DatasetCard.load(dataset_card_path(data))
    assert dcard.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}]
    assert dcard.data.task_categories == ["text-generation"] and "4 prompt–completion records" in dcard.text
    # The dataset as pushed (data/train.jsonl) loads with `datasets` in TRL's conversational format.
    from datasets import load_dataset

    rows = load_dataset("json", data_files=str(data), split="train")
    assert rows.num_rows == 4 and rows[0]["completion"][0]["role"] == "assistant"


def test_first_markdown_table():
    md = "# t\n\nSome text | with a pipe.\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\nmore\n\n| c |\n|---|\n"
    assert first_markdown_table(md) == "| a | b |\n|---|:-:|\n| 1 | 2 |"
    assert first_markdown_table("no table") is None


def fake_run(tmp_path, entries=("rar_2step",)):
    """A run folder with the files a finished train stage leaves (contents do not matter to the plan)."""
    run = tmp_path / "run"
    cfg = load_config(None, ["distill.methods=[system1,rar_2step]", f"run_dir={run}"])
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    for entry in entries:
        ckpt = run / "train" / entry
        for f in ("model.safetensors", "config.json", "README.md", "DONE.json", "train_log.jsonl",
                  "runs/Jan01_host/events.out.tfevents.1", "checkpoint-2/model.safetensors"):
            (ckpt / f).parent.mkdir(parents=True, exist_ok=True)
            (ckpt / f).write_text("{}")
        (run / "distill").mkdir(exist_ok=True)
        (run / "distill" / f"{entry}.jsonl").write_text("{}\n")
        (run / "distill" / f"{entry}.card.md").write_text("---\n---\n")
    return run, cfg


def test_upload_plan_maps_each_file_to_its_repo(tmp_path):
    run, cfg = fake_run(tmp_path)
    assert pick_entry(run, cfg, None) == "rar_2step"
    model, dataset = upload_plan(run, "me/last-letter-rar", "rar_2step")
    assert (model.repo_id, model.repo_type, dataset.repo_id, dataset.repo_type) == (
        "me/last-letter-rar", "model", "me/last-letter-rar", "dataset")
    ckpt = run / "train" / "rar_2step"
    assert dict(model.files) == {ckpt / f: f for f in ("DONE.json", "README.md", "config.json", "model.safetensors",
                                                       "runs/Jan01_host/events.out.tfevents.1", "train_log.jsonl")}
    assert dict(dataset.files) == {run / "distill" / "rar_2step.card.md": "README.md",
                                   run / "distill" / "rar_2step.jsonl": "data/train.jsonl",
                                   run / "config.yaml": "sys2distill_config.yaml"}
    with pytest.raises(UserError, match="'me' is not a Hub repo id: write ORG/NAME"):
        upload_plan(run, "me", "rar_2step")


def test_which_checkpoint_to_push(tmp_path):
    run, cfg = fake_run(tmp_path, entries=("system1", "rar_2step"))
    with pytest.raises(UserError, match=r"has 2 distilled models \(system1, rar_2step\): pass --entry NAME"):
        pick_entry(run, cfg, None)
    assert pick_entry(run, cfg, "system1") == "system1"
    with pytest.raises(UserError, match="no finished checkpoint for entry 'rar'"):
        pick_entry(run, cfg, "rar")


@pytest.mark.parametrize("env, message", [
    ({"HF_HUB_OFFLINE": "1"}, "error: HF_HUB_OFFLINE is set: unset it to push"),
    ({"HF_HUB_OFFLINE": "0"}, "error: no Hugging Face token: run `hf auth login` or set HF_TOKEN"),
])
def test_push_without_the_hub_is_one_line(tmp_path, env, message):
    run, _ = fake_run(tmp_path)
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    environ.update(env, HF_HOME=str(tmp_path / "hf"))  # no stored token either
    r = subprocess.run([sys.executable, "-m", "sys2distill", "push", str(run), "--repo", "me/x"], capture_output=True,
                       text=True, env=environ, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == message + (
        " to a token with write access" if "token" in message else " (the upload needs the Hub)"), r.stderr

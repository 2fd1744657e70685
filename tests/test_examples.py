"""The worked example in examples/gsm8k_chain/, end to end at tiny size: `init` writes the committed
config, `show-prompt` renders both chain steps, and the pipeline runs every stage on it."""

import json
import shutil
from pathlib import Path

from sys2distill.config import load_config
from sys2distill.pipeline import Pipeline
from sys2distill.tasks.dataset import DatasetTask

EXAMPLE = Path(__file__).parents[1] / "examples" / "gsm8k_chain"
INIT = ["init", "--data", "problems.jsonl", "--question", "{question}", "--answer", "answer", "--answer-type", "number",
        "--method", "facts_then_solve.yaml", "--test-ratio", "0.25", "--out", "config.yaml"]
# Greedy samples agree, so the filter keeps inputs and every stage has data.
TINY = ["task.train_size=4", "task.test_size=2", "generation.num_samples=2", "generation.temperature=0",
        "generation.max_tokens=4", "evaluate.max_tokens=4", "evaluate.fidelity_samples=2", "train.max_steps=1",
        "train.batch_size=2", "backend.batch_size=8"]


def cli(*args):
    from typer.testing import CliRunner

    from sys2distill.cli import app

    return CliRunner().invoke(app, list(args))


def test_gsm8k_chain_example_from_init_to_report(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    work = tmp_path / "gsm8k_chain"
    work.mkdir()
    for name in ("problems.jsonl", "facts_then_solve.yaml"):
        shutil.copy(EXAMPLE / name, work / name)

    monkeypatch.chdir(work)
    r = cli(*INIT)  # the README's first command writes the config shipped beside it
    assert r.exit_code == 0, r.stderr
    assert "45 train inputs, 15 test items" in r.stdout
    assert (work / "config.yaml").read_text() == (EXAMPLE / "config.yaml").read_text()

    r = cli("show-prompt", "config.yaml", "--method", "facts_then_solve")
    assert r.exit_code == 0, r.stderr
    step1, step2 = r.stdout.split("--- step 1/2: facts ---")[1].split("--- step 2/2: solve (holds the output of step facts")
    assert step1.count("<|im_start|>user") == 1 and step1.rstrip().endswith("<|im_start|>assistant")
    assert "Do not solve it yet." in step1 and "What it gives and asks:\n<output of step facts>\n" in step2

    # A random model writes no numbers: let the last word vote, so the filter keeps inputs to train on.
    monkeypatch.setattr(DatasetTask, "extract_answer", lambda self, text: (text.split() or ["none"])[-1])
    cfg = load_config(EXAMPLE / "config.yaml", [*TINY, f"run_dir={tmp_path}/run"])
    Pipeline(cfg, loaded_base=(tiny_model(embedded_tokenizer), embedded_tokenizer)).run()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [s["label"] for s in results["scores"]] == ["System 1", "Facts, then solve", "Distill System 1",
                                                       "Distilled Facts, then solve"]
    chain = next(s for s in results["scores"] if s["system"] == "facts_then_solve")
    system1 = next(s for s in results["scores"] if s["system"] == "system1")
    assert chain["n"] == 2 and chain["mean_tokens"] > system1["mean_tokens"]  # two steps' tokens counted
    traces = [json.loads(line) for line in (tmp_path / "run" / "generate" / "facts_then_solve.jsonl").read_text().splitlines()]
    assert len(traces) == 4 * 2 and all([s["name"] for s in t["steps"]] == ["facts", "solve"] for t in traces)
    assert (tmp_path / "run" / "results.md").read_text().count("Facts, then solve") >= 2

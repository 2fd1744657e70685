"""What a new user's trial ran into: a push that changed the run folder, slow starts, and rough edges.

Each test fails on the code before the fix (the issue "What a new user hit")."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sys2distill.config import load_config
from sys2distill.errors import UserError
from sys2distill.pipeline import Pipeline
from sys2distill.tasks.last_letter import LastLetter

ROOT = Path(__file__).parents[1]


def cli(*args, cwd=ROOT, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "sys2distill", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def one_line(r, message):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def digests(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


OVERRIDES = ["task.name=last_letter", "task.train_size=4", "task.test_size=2", "generation.num_samples=2",
             "generation.temperature=0", "generation.max_tokens=4", "distill.methods=[rar_2step]", "train.max_steps=1",
             "train.batch_size=2", "evaluate.systems=[system1,rar_2step]", "evaluate.max_tokens=4",
             "evaluate.fidelity_samples=0", "backend.batch_size=8"]


@pytest.fixture
def tiny(embedded_tokenizer, tiny_model, monkeypatch):
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
    return tiny_model(embedded_tokenizer), embedded_tokenizer


def finished_run(tmp_path, tiny, *extra) -> Pipeline:
    p = Pipeline(load_config(None, [*OVERRIDES, f"run_dir={tmp_path}/{{name}}", *extra]), loaded_base=tiny)
    p.run()
    return p


def test_push_that_cannot_reach_the_hub_is_one_line_and_changes_no_file(tmp_path, tiny):
    p = finished_run(tmp_path, tiny)
    before = digests(p.dir)
    # The installed huggingface_hub, with a token, against a loopback port nothing listens on: the real
    # connection error of its HTTP client (httpx2 in huggingface_hub 2.x).
    env = {**os.environ, "HF_TOKEN": "hf_" + "a" * 34, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf")}
    for run in (str(p.dir), str(p.dir / "config.yaml")):  # the run folder, or the config it ran with
        r = cli("push", run, "--repo", "me/lookup", env=env)
        one_line(r, "could not reach the Hugging Face Hub")
        assert "nothing in the run folder was changed" in r.stderr
    assert digests(p.dir) == before  # the model card was not rewritten
    p.run()  # and the next run finds every stage intact: nothing removed, nothing retrained
    assert digests(p.dir) == before


def test_commands_that_need_no_model_do_not_import_torch(tmp_path):
    # A torch that cannot be imported: `--help`, `list`, `config` and config mistakes must not need it.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    assert cli("--help", env=env).returncode == 0
    listing = cli("list", env=env)
    assert listing.returncode == 0 and "backends: hf, openai, vllm" in listing.stdout
    assert cli("config", "cot_lookup", env=env).returncode == 0
    one_line(cli("run", "cot_lookup", "generation.num_sample=2", env=env), "did you mean 'generation.num_samples'")
    one_line(cli("run", "cot_lookup", "evaluate.systems=[cot_fewshoot]", env=env), "unknown method 'cot_fewshoot'")
    one_line(cli("run", "cot_lookup", "backend.name=vlm", env=env), "unknown backend 'vlm'")


@pytest.mark.parametrize("make, message", [
    (lambda d: d.joinpath("rows.txt").write_text("What is 2 + 2?\t4\n"), "cannot read {p}: .txt files are not read; the "
     "dataset task reads a JSONL (.jsonl, .json), CSV (.csv) or Parquet (.parquet) file"),
    (lambda d: d.joinpath("rows").mkdir(), "data path {p} is a folder without JSONL, CSV or Parquet files"),
])
def test_a_data_file_of_another_format_or_a_folder_is_named_as_such(tmp_path, make, message):
    import time

    make(tmp_path)
    path = next(p for p in tmp_path.iterdir())
    start = time.perf_counter()
    r = cli("init", "--data", str(path), "--question", "{q}", "--answer", "a", "--answer-type", "number",
            "--out", str(tmp_path / "c.yaml"))
    one_line(r, message.format(p=path))
    assert "could not load Hugging Face dataset" not in r.stderr and time.perf_counter() - start < 30  # no Hub retries
    assert not (tmp_path / "c.yaml").exists()


def test_chain_steps_read_the_rows_own_fields_but_never_the_gold(tmp_path):
    from sys2distill.config import ChainConfig
    from sys2distill.methods.chain import Chain
    from sys2distill.tasks.dataset import DatasetTask

    rows = [{"problem": f"{i} + 2", "unit": "apples", "solution": str(i + 2)} for i in range(10)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = DatasetTask(train_size=4, test_size=2, path=str(path), question="What is {problem}?", answer="solution",
                       answer_type="number")
    task.check_data()
    chain = Chain("hinted", ChainConfig(steps=[{"name": "plan", "prompt": "Count {unit}: {question}"},
                                               {"name": "solve", "prompt": "{plan} So, in {unit}?"}]), task)
    ex = task.load("test")[0]
    row = rows[ex.metadata["row"] - 1]
    assert chain.prompt("plan", ex)[0]["content"] == f"Count apples: What is {row['problem']}?"
    assert chain.prompt("solve", ex, plan="P")[0]["content"] == "P So, in apples?"
    assert "solution" not in task.prompt_field_names and "solution" not in task.prompt_fields(ex)
    with pytest.raises(UserError, match=r"uses \{solution\}, which is no step, task field or \{question\}"):
        Chain("leak", ChainConfig(steps=[{"name": "s", "prompt": "{question} ({solution})"}]), task)


def test_a_filter_that_kept_nothing_says_how_many_tied_and_how_to_go_on(tmp_path, tiny, monkeypatch):
    # Two samples per input, always two different answers: every input is a tie.
    monkeypatch.setattr(LastLetter, "extract_answer", lambda self, text: text)
    cfg = load_config(None, [*OVERRIDES, "generation.temperature=1.0", "generation.max_tokens=6", f"run_dir={tmp_path}/{{name}}"])
    p = Pipeline(cfg, loaded_base=tiny)
    with pytest.raises(UserError) as e:
        p.run()
    message = str(e.value)
    assert message.startswith("the filter kept none of the 4 inputs of distill entry 'rar_2step' (4 tie between top "
                              "answers) (ties are common at few samples: raise generation.num_samples)")
    assert "set distill.on_empty=skip to report it as not trained" in message
    assert (p.dir / "generate" / "rar_2step.jsonl").exists()  # the samples are kept: a rerun resumes


def write_rows(path: Path, suffix: str) -> Path:
    rows = [{"q": f"What is {i} + 1?", "a": str(i + 1)} for i in range(12)]
    if suffix == ".csv":
        path.write_text("q,a\n" + "".join(f"{r['q']},{r['a']}\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_init_names_a_run_with_name_and_a_collision_says_so(tmp_path):
    csv, jsonl = write_rows(tmp_path / "sums.csv", ".csv"), write_rows(tmp_path / "sums.jsonl", ".jsonl")
    base = ["init", "--question", "{q}", "--answer", "a", "--answer-type", "number", "--method", "cot"]
    assert cli(*base, "--data", str(csv), cwd=tmp_path).returncode == 0
    one_line(cli(*base, "--data", str(jsonl), cwd=tmp_path), "sums_cot.yaml exists: pass --name")
    r = cli(*base, "--data", str(jsonl), "--name", "sums_from_jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_config(tmp_path / "sums_from_jsonl.yaml").name == "sums_from_jsonl"
    assert load_config(tmp_path / "sums_cot.yaml").name == "sums_cot"
    one_line(cli(*base, "--data", str(jsonl), "--name", "a/b", cwd=tmp_path), "--name 'a/b' is not a run name")


def test_report_takes_a_run_folder_and_a_run_that_never_ran_leaves_nothing(tmp_path, tiny):
    p = finished_run(tmp_path, tiny)
    moved = tmp_path / "elsewhere" / "my_run"
    moved.parent.mkdir()
    p.dir.rename(moved)
    r = cli("report", str(moved))  # the folder, moved: its own config.yaml, its own place
    assert r.returncode == 0, r.stderr
    assert f"report: {moved / 'results.md'}" in r.stdout
    one_line(cli("report", str(tmp_path)), "is a folder without config.yaml, so not a run folder")
    # A new name or run_dir starts a new folder from the run's config, as it would from a config file.
    assert load_config(moved, [f"run_dir={tmp_path / 'copy'}"]).path == tmp_path / "copy"
    assert load_config(moved).path == moved
    never = tmp_path / "never_ran"
    config = tmp_path / "never.yaml"
    config.write_text(f"name: never_ran\nrun_dir: {never}\n")
    one_line(cli("report", str(config)), "does not exist, so the report stage has nothing")
    assert not never.exists()
    one_line(cli("push", str(config), "--repo", "me/x"), "has not run yet")
    assert not never.exists()


def test_repairs_print_one_line_each_and_losses_four_digits(tmp_path, tiny, capfd):
    p = finished_run(tmp_path, tiny)
    md = (p.dir / "results.md").read_text()
    loss = json.loads((p.dir / "train" / "rar_2step" / "DONE.json").read_text())["final_loss"]
    assert f"| {loss:.4g} |" in md and f"| {loss} |" not in md
    traces = p.dir / "generate" / "rar_2step.jsonl"
    traces.write_text("".join(traces.read_text().splitlines(keepends=True)[:5]))  # cut: 3 samples lost
    capfd.readouterr()
    p.run()
    err = capfd.readouterr().err
    assert f"repair: {traces} was changed: its 5 intact samples kept, the missing ones drawn again" in err.splitlines()

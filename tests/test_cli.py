"""The command line as a user meets it: help, listings, and one-line errors."""

import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sys2distill", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_lists_the_stages_one_per_line():
    lines = cli("--help").stdout.splitlines()
    for stage, what in [("generate", "sample N System 2 traces"), ("filter", "keep inputs whose answers"),
                        ("train", "fine-tune the same model"), ("evaluate", "System 1, System 2 and distilled"),
                        ("report", "accuracy and mean generated tokens")]:
        assert any(line.split()[:1] == [stage] and what in line for line in lines), stage


def test_run_requires_a_config():
    r = cli("run")
    assert r.returncode == 2 and "Missing argument 'CONFIG'" in r.stderr


def test_each_stage_command_prints_the_next_one(monkeypatch):
    from typer.testing import CliRunner

    from sys2distill.cli import app
    from sys2distill.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "run", lambda self, stages, force: None)  # the stages' work has its own tests
    args = ["configs/rar_last_letter.yaml", "task.test_size=5", "name=my run"]
    for stage, following in [("generate", "filter"), ("filter", "train"), ("train", "evaluate"), ("evaluate", "report")]:
        out = CliRunner().invoke(app, [stage, *args]).output
        assert out.splitlines()[-1] == f"next: sys2distill {following} configs/rar_last_letter.yaml task.test_size=5 'name=my run'"
    out = CliRunner().invoke(app, ["report", *args]).output
    assert out.splitlines()[-1] == "next: share a distilled model with `sys2distill push 'runs/my run' --repo ORG/NAME`"


def test_list():
    out = cli("list").stdout
    assert "last_letter" in out and "rar_2step" in out and "majority" in out and "hf" in out


def test_show_prompt():
    r = cli("show-prompt", "rar_2step", "last_letter")
    assert r.returncode == 0
    assert "separate these 2 words" in r.stdout and "Take the last letters of the words in" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "no/such.yaml"], "config file not found: no/such.yaml"),
    (["run", "configs/rar_last_letter.yaml", "generation.num_sample=2"], "did you mean 'generation.num_samples'"),
    (["run", "configs/rar_last_letter.yaml", "task.name=gsm9k"], "unknown task 'gsm9k'"),
    (["run", "configs/rar_last_letter.yaml", "model=./no/such/model", "run_dir={tmp}/{{name}}"], "model path ./no/such/model does not exist"),
    (["show-prompt", "rar3", "last_letter"], "unknown method 'rar3'"),
    (["run", "configs/rar_last_letter.yaml", "--force", "trian"], "unknown stage 'trian'"),
    (["run", "configs/rar_last_letter.yaml", "train.sft_args={{lr_sheduler_type: cosine}}"],
     "train.sft_args.lr_sheduler_type is not an SFTConfig field: did you mean 'lr_scheduler_type'?"),
    (["run", "configs/rar_last_letter.yaml", "train.sft_args={{learning_rate: 0.001}}"],  # the config sets train.learning_rate
     "train.learning_rate and train.sft_args.learning_rate set the same thing"),
    (["run", "configs/rar_last_letter.yaml", "train.report_to=tensorbord"], "did you mean 'tensorboard'"),
])
def test_user_errors_are_one_line(args, message, tmp_path):
    from pathlib import Path

    root = Path(__file__).parents[1]
    r = cli(*[a.format(tmp=tmp_path) for a in args], cwd=root)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr

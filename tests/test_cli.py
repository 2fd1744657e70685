"""The command line as a user meets it: help, listings, and one-line errors."""

import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sys2distill", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_explains_stages():
    out = cli("--help").stdout
    for stage in ("generate", "filter", "train", "evaluate", "report"):
        assert stage in out


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
])
def test_user_errors_are_one_line(args, message, tmp_path):
    from pathlib import Path

    root = Path(__file__).parents[1]
    r = cli(*[a.format(tmp=tmp_path) for a in args], cwd=root)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr

"""The unchanged trainer under ``torchrun`` with 2 CPU processes (gloo), issue 5 part 5."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sys2distill.models import load_model_and_tokenizer
from sys2distill.records import DistillRecord, write_jsonl

WORDS = ["apple banana", "cherry date", "elder fig", "grape honey", "iris jade", "kiwi lemon", "mango nut", "olive pear"]


def test_torchrun_two_cpu_processes(tmp_path, embedded_tokenizer):
    assert embedded_tokenizer is not None  # the fixture converts the embedded checkpoint before two ranks would race to
    data = tmp_path / "train.jsonl"
    write_jsonl(data, [DistillRecord(id=f"ex{i}", prompt=[{"role": "user", "content": f"Last letters of '{w}'?"}],
                                     completion=[{"role": "assistant", "content": "".join(x[-1] for x in w.split())}],
                                     metadata={}) for i, w in enumerate(WORDS)])
    torchrun = shutil.which("torchrun") or pytest.fail("torchrun not on PATH (it comes with torch)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # --standalone: a local rendezvous on a free port, so parallel CI jobs never collide
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(Path(__file__).with_name("ddp_train.py")), str(data),
           str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]

    done = list(tmp_path.rglob("DONE.json"))
    assert len(done) == 1  # rank 0 alone writes the marker
    info = json.loads(done[0].read_text())
    assert info["processes"] == 2 and info["examples"] == 8
    assert info["steps"] == 2  # 8 records / (2 ranks × batch 2): the ranks split the data (4 if each saw all of it)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["backend"] for r in ranks} == {"gloo"}
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # DDP all-reduced the gradients: identical replicas

    model, tokenizer = load_model_and_tokenizer(str(done[0].parent))
    assert len(tokenizer) == len(embedded_tokenizer)
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    assert total == pytest.approx(ranks[0]["checksum"], rel=1e-9)  # the saved checkpoint is the trained replica
    with torch.inference_mode():
        assert model(**tokenizer("Hi", return_tensors="pt")).logits.shape[-1] == len(tokenizer)

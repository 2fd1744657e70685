"""Issue 21: every failure a user can cause ends in one line naming the problem and the fix (no
traceback, nothing computed lost), one process writes a run folder, and no secret is written.

One test per row of the issue's table (``test_row_<n>_…``), then the lock, the secrets, and a
property test that damages a finished run folder at random.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from fake_openai import FakeServer

from sys2distill.backends.openai_compat import OpenAIBackend
from sys2distill.config import dump_config, load_config
from sys2distill.errors import UserError
from sys2distill.records import iter_jsonl
from sys2distill.redact import looks_secret, redact
from sys2distill.tasks import REGISTRY as TASKS
from sys2distill.tasks.pairwise_judge import read_oasst2_trees
from sys2distill.tasks.sycophancy import read_sycophancy_eval


def one_line(e: pytest.ExceptionInfo, *parts: str) -> str:
    """The error's message, checked to be one line that contains every part."""
    message = str(e.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


def test_row_1_gsm8k_garbage_line_names_file_and_line(tmp_path):
    good = json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"})
    (tmp_path / "train.jsonl").write_text(f"{good}\n<<<garbage\n{good}\n")
    with pytest.raises(UserError) as e:
        TASKS["gsm8k"](data_dir=str(tmp_path), train_size=2).load("train")
    one_line(e, "train.jsonl line 2", "fix or delete that line")
    (tmp_path / "train.jsonl").write_text(f'{good}\n{{"question": "q", "answer": 7}}\n')  # JSON, but not GSM8K
    with pytest.raises(UserError) as e:
        TASKS["gsm8k"](data_dir=str(tmp_path), train_size=2).load("train")
    one_line(e, "row 2 is not GSM8K format")


def test_row_2_sycophancy_eval_row_without_question(tmp_path):
    row = {"prompt": [{"type": "human", "content": "Where is Timbuktu?"}], "metadata": {"prompt_template": "{question}"},
           "base": {"dataset": "trivia_qa", "correct_answer": "Mali", "incorrect_answer": "Niger"}}
    path = tmp_path / "answer.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError) as e:
        read_sycophancy_eval(path)
    one_line(e, "line 1 is not a SycophancyEval answer.jsonl row (it lacks 'question')", "check the file")
    row["base"]["dataset"] = "truthful_qa"  # rows of other datasets are skipped before their fields are read
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match="no rows with base.dataset 'trivia_qa'"):
        read_sycophancy_eval(path)


def test_row_3_oasst2_ranked_reply_without_text(tmp_path):
    tree = {"prompt": {"text": "How do I boil an egg?", "lang": "en", "replies": [
        {"role": "assistant", "rank": 0, "text": "Boil water first."}, {"role": "assistant", "rank": 1}]}}
    path = tmp_path / "trees.jsonl"
    path.write_text(json.dumps(tree) + "\n")
    with pytest.raises(UserError) as e:
        read_oasst2_trees(path)
    one_line(e, "line 1 is not an OASST2 message tree (a message lacks 'text')", "trees.jsonl export")


def test_row_4_path_is_a_folder_gzip_or_binary(tmp_path):
    with pytest.raises(UserError) as e:
        list(iter_jsonl(tmp_path))
    one_line(e, "is a folder, not a JSONL file: name the file itself")
    # OASST2 ships its trees gzipped: read as they are.
    tree = {"prompt": {"text": "Q?", "lang": "en", "replies": [{"role": "assistant", "rank": 0, "text": "a"},
                                                                {"role": "assistant", "rank": 1, "text": "b"}]}}
    gz = tmp_path / "trees.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(tree) + "\n").encode()))
    assert [(p["response_1"], p["response_2"]) for p in read_oasst2_trees(gz)] == [("a", "b")]
    gz.write_bytes(gz.read_bytes()[:20])  # a download cut short
    with pytest.raises(UserError) as e:
        list(iter_jsonl(gz))
    one_line(e, "damaged gzip file")
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\xff\xfe" * 10)
    with pytest.raises(UserError) as e:
        list(iter_jsonl(binary))
    one_line(e, "is not UTF-8 text", "pass the JSONL file itself")


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


def test_row_5_server_answering_html(server, monkeypatch):
    html = b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"

    def answer_html(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(html)))
        handler.end_headers()
        handler.wfile.write(html)

    from fake_openai import _Handler

    monkeypatch.setattr(_Handler, "do_GET", answer_html)
    with pytest.raises(UserError) as e:
        OpenAIBackend(base_url=server.base_url)
    one_line(e, "/v1/models answered HTTP 200 with a body that is not JSON (it starts '<!DOCTYPE html>",
             "point backend.base_url at an OpenAI-compatible API")
    monkeypatch.undo()
    backend = OpenAIBackend(base_url=server.base_url, max_retries=0)
    monkeypatch.setattr(_Handler, "do_POST", lambda h: (h.rfile.read(int(h.headers["Content-Length"])), answer_html(h)))
    from sys2distill.backends.base import SamplingParams

    with pytest.raises(UserError) as e:
        backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=4))
    one_line(e, "/v1/chat/completions answered HTTP 200 with a body that is not JSON")


def test_row_9_a_key_in_the_config_is_refused_and_never_echoed(tmp_path, monkeypatch):
    key = "sk-proj-" + "Ab3dE9fGh2JkL7mNp4QrS8tUv1WxY6z0"
    for overrides, part in [([f"backend.api_key={key}"], "a key never goes in a config"),
                            ([f"backend.api_key_env={key}"], "not the key itself"),
                            ([f"backend.api_key_env=hf_{key[8:]}"], "not the key itself"),
                            ([f"backend.base_url=http://h/v1?key={key[8:]}"], "config key backend.base_url holds what looks like"),
                            ([f"prompts={{system1: {{answer: 'use {key}'}}}}"], "config key prompts.system1.answer")]:
        with pytest.raises(UserError) as e:
            load_config(None, overrides)
        assert key not in one_line(e, part) and key[8:] not in str(e.value)
    # Following the hint: the key in a variable, the variable's name in the config.
    monkeypatch.setenv("MY_KEY", key)
    cfg = load_config(None, ["backend.name=openai", "backend.api_key_env=MY_KEY"])
    assert key not in dump_config(cfg)
    # A variable named on purpose must exist (the default may be unset: local servers take no key).
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(UserError) as e:
        OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY")
    one_line(e, "backend.api_key_env names $MY_KEY, which is not set: `export MY_KEY=<key>`")


def test_row_11_malformed_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ngeneration:\n  num_samples: 4\n   temperature: 0.5\n")
    with pytest.raises(UserError) as e:
        load_config(path)
    one_line(e, "c.yaml is not valid YAML at line 4, column 15: mapping values are not allowed here: fix it there")
    path.write_text("evaluate:\n  systems: [system1, cot\n")
    with pytest.raises(UserError) as e:
        load_config(path)
    one_line(e, "(while parsing a flow sequence at line 2, column 12)")
    with pytest.raises(UserError) as e:
        load_config(None, ["evaluate.systems=[system1, cot"])
    one_line(e, "override evaluate.systems=... has a value that is not valid YAML", "quote it")


def test_row_12_unreachable_hub_model_fails_in_seconds(monkeypatch):
    import huggingface_hub

    from sys2distill.models import resolve_model

    start = time.perf_counter()
    with pytest.raises(UserError) as e:  # offline here: unreachable; online: not on the Hub
        resolve_model("nomodelhere")
    one_line(e, "model 'nomodelhere' is not", "use 'embedded', a local checkpoint folder, or a Hub id you can reach")
    assert time.perf_counter() - start < 15  # from_pretrained's retries took ~30-50 s to say the same
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as e:
        resolve_model("org/nomodelhere")
    one_line(e, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set")


def test_secrets_are_recognised_and_redacted():
    for secret in ["sk-" + "a1B2c3D4e5F6g7H8i9J0", "sk-ant-api03-" + "x" * 20, "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123",
                   "zrDnDXPeRtAA2FO0xyB3UH4CLIkUe_OHdPhOMCQXByE", "AIzaSyD3x9Kq7Lm2Np8Rt5Vw1Yb4Zc6Fh0Jg"]:
        assert looks_secret(secret) and redact(f"key={secret}.") == "key=<redacted>."
        assert secret not in str(UserError(f"server said: bad key {secret}"))
    for name in ["Qwen/Qwen2.5-7B-Instruct", "NousResearch_Hermes-2-Pro-Llama-3-8B", "DeepSeek-R1-Distill-Qwen-32B-Instruct",
                 "/root/.cache/huggingface/hub/models--x/snapshots/a8bdd93704cb5aabc2e3fc01a65c400b40d0fe5f",
                 "2023-11-05_oasst2_ready.trees.jsonl.gz", "Take the last letters of the words in {question}"]:
        assert not looks_secret(name), name


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sys2distill.runlock import run_lock
    with run_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_lock_one_writer_and_stale_lock_taken_over(tmp_path):
    from sys2distill.runlock import LOCK_FILE, run_lock

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError) as e:
            with run_lock(tmp_path):
                pass
        one_line(e, f"run folder {tmp_path} is in use by another sys2distill run (pid {holder.pid} on ")
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel releases it
        holder.wait()
    with run_lock(tmp_path):  # the dead process's lock is taken over
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())

"""Issue 21: every failure a user can cause ends in one line naming the problem and the fix (no
traceback, nothing computed lost), one process writes a run folder, and no secret is written.

One test per row of the issue's table (``test_row_<n>_…``), then the lock, the secrets, and a
property test that damages a finished run folder at random.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import build_tiny_model
from fake_openai import FakeServer, _Handler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline import OVERRIDES, make, tiny  # noqa: F401  (tiny: the fixture)

from sys2distill import pipeline
from sys2distill.backends.base import SamplingParams
from sys2distill.backends.openai_compat import OpenAIBackend
from sys2distill.config import dump_config, load_config
from sys2distill.configview import UndeclaredConfigKey
from sys2distill.errors import UserError
from sys2distill.models import resolve_model
from sys2distill.records import Trace, iter_jsonl, read_records
from sys2distill.redact import looks_secret, redact
from sys2distill.runlock import LOCK_FILE, run_lock
from sys2distill.tasks import REGISTRY as TASKS
from sys2distill.tasks.last_letter import LastLetter
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
    (tmp_path / "test.jsonl").write_text(f"{good}\n")
    (tmp_path / "train.jsonl").write_text(f"{good}\n<<<garbage\n{good}\n")
    with pytest.raises(UserError) as e:
        TASKS["gsm8k"](data_dir=str(tmp_path), train_size=2).load("train")
    one_line(e, "train.jsonl line 2", "fix or delete that line")
    (tmp_path / "train.jsonl").write_text(f'{good}\n{{"answer": "#### 7"}}\n')  # JSON, but no question
    with pytest.raises(UserError) as e:
        TASKS["gsm8k"](data_dir=str(tmp_path), train_size=2).load("train")
    one_line(e, "names field 'question', which gsm8k row 2 does not have")


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

    monkeypatch.setattr(_Handler, "do_GET", answer_html)
    with pytest.raises(UserError) as e:
        OpenAIBackend(base_url=server.base_url)
    one_line(e, "/v1/models answered HTTP 200 with a body that is not JSON (it starts '<!DOCTYPE html>",
             "point backend.base_url at an OpenAI-compatible API")
    monkeypatch.undo()
    backend = OpenAIBackend(base_url=server.base_url, max_retries=0)
    monkeypatch.setattr(_Handler, "do_POST", lambda h: (h.rfile.read(int(h.headers["Content-Length"])), answer_html(h)))
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

    start = time.perf_counter()
    with pytest.raises(UserError) as e:  # offline here: unreachable; online: not on the Hub
        resolve_model("nomodelhere")
    one_line(e, "model 'nomodelhere' is not", "use 'embedded', a local checkpoint folder, or a Hub id you can reach")
    assert time.perf_counter() - start < 15  # from_pretrained's retries took ~30-50 s to say the same
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as e:
        resolve_model("org/nomodelhere")
    one_line(e, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set")


@pytest.mark.parametrize("args, message", [
    (["run", "{tmp}/bad.yaml"], "(while parsing a flow mapping at line 2, column 7): fix it there"),
    (["run", "configs/rar_last_letter.yaml", "backend.api_key_env=hf_Ab3dE9fGh2JkL7mNp4QrS8tUv1WxY6z0"], "not the key itself"),
])
def test_cli_prints_one_line_exit_2_and_no_secret(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("name: x\ntask: {a\n")
    r = subprocess.run([sys.executable, "-m", "sys2distill", *[a.format(tmp=tmp_path) for a in args]], capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "hf_Ab3dE9" not in r.stderr + r.stdout


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


# -- rows about the run folder: the tiny in-process model of test_pipeline -----------------------------------


def test_row_6_damaged_trace_file_of_a_finished_stage_is_repaired(tmp_path, tiny):
    p = make(tmp_path, tiny, "distill.methods=[system1,rar_2step]")
    p.run(stages=("generate",))
    path, other = p.dir / "generate" / "rar_2step.jsonl", p.dir / "generate" / "system1.jsonl"
    lines, untouched = path.read_text().splitlines(keepends=True), other.read_bytes()
    path.write_text("".join(lines[:-1]))  # lost its last line
    make(tmp_path, tiny, "distill.methods=[system1,rar_2step]").run(stages=("generate", "filter"))
    assert sorted(path.read_text().splitlines(keepends=True)) == sorted(lines)  # the same sample, drawn again
    assert other.read_bytes() == untouched  # the other method's traces are not touched
    record = json.loads((p.dir / "generate" / "STAGE.json").read_text())
    assert record["done"] and record["repaired"] == {
        "generate/rar_2step.jsonl": {"problem": "changed", "samples_kept": len(lines) - 1, "samples_regenerated": 1}}
    assert (p.dir / "filter" / "STAGE.json").exists()
    # A line overwritten with garbage and another duplicated: the intact samples are kept (a sample after a
    # lost one too, unless it would leave a gap), the rest drawn again.
    text = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*text[:4], "{garbage\n", text[3], *text[5:]]))
    make(tmp_path, tiny, "distill.methods=[system1,rar_2step]").run(stages=("generate",))
    assert sorted(path.read_text().splitlines(keepends=True)) == sorted(lines)
    entry = json.loads((p.dir / "generate" / "STAGE.json").read_text())["repaired"]["generate/rar_2step.jsonl"]
    assert entry["samples_regenerated"] >= 1 and entry["samples_kept"] + entry["samples_regenerated"] == len(lines)


def test_lost_stage_record_is_recovered_from_a_later_one(tmp_path, tiny):
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    p.run(stages=("generate", "filter"))
    traces = (p.dir / "generate" / "system1.jsonl").read_bytes()
    (p.dir / "generate" / "STAGE.json").unlink()
    make(tmp_path, tiny, "distill.methods=[system1]").run(stages=("generate",))  # filter's record holds generate's values
    assert (p.dir / "generate" / "system1.jsonl").read_bytes() == traces
    assert json.loads((p.dir / "generate" / "STAGE.json").read_text())["done"]
    # No later record to vouch for them, or other values in it: unknown values, one line.
    (p.dir / "filter" / "STAGE.json").write_text('{"config": {"model"')
    with pytest.raises(UserError) as e:
        make(tmp_path, tiny, "distill.methods=[system1]").run(stages=("filter",))
    one_line(e, "filter/STAGE.json is damaged, so the values filter's outputs were made with are unknown",
             "redo the stage with --force filter")


def test_row_7_refused_rerun_leaves_config_yaml_and_records_as_they_were(tmp_path, tiny):
    p = make(tmp_path, tiny, "distill.methods=[system1]")
    p.run(stages=("generate", "filter"))
    before = {f: f.read_bytes() for f in [p.dir / "config.yaml", *p.dir.glob("*/STAGE.json")]}
    with pytest.raises(UserError) as e:
        make(tmp_path, tiny, "distill.methods=[system1]", "generation.temperature=0.5").run()
    one_line(e, "finished 'generate' stage made with different generation.temperature: redo it with --force generate")
    assert {f: f.read_bytes() for f in before} == before
    assert "temperature: 0.0" in (p.dir / "config.yaml").read_text()
    assert json.loads((p.dir / "generate" / "STAGE.json").read_text())["config"]["generation.temperature"] == 0.0
    # A later stage's refusal is decided before an earlier stage runs, so nothing is written either.
    with pytest.raises(UserError, match="'filter' stage made with different filter"):
        make(tmp_path, tiny, "distill.methods=[system1]", "filter.min_agreement=0.9").run(stages=("generate", "filter"))
    assert {f: f.read_bytes() for f in before} == before


def test_row_8_second_process_on_a_run_folder(tmp_path, tiny):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError) as e:
            make(tmp_path, tiny, "distill.methods=[system1]").run()
        one_line(e, f"is in use by another sys2distill run (pid {holder.pid} on ")
        assert sorted(f.name for f in (tmp_path / "run").iterdir()) == [".lock"]  # the second process wrote nothing
    finally:
        holder.kill()
        holder.wait()


def test_row_10_adaptive_stop_on_the_filter_resumes_when_the_filter_changes(tmp_path, tiny):
    args = ["distill.methods=[system1]", "generation.num_samples=4", "generation.adaptive=true",
            "generation.adaptive_min_samples=2", "generation.adaptive_rule=exact"]
    p = make(tmp_path, tiny, *args, "filter.min_agreement=0.5")
    p.run(stages=("generate",))
    path = p.dir / "generate" / "system1.jsonl"
    first = path.read_text().splitlines()
    assert len(first) == 6 * 3  # greedy samples agree: 3 of 4 settle the majority filter at 0.5
    assert json.loads((p.dir / "generate" / "STAGE.json").read_text())["config"]["filter.min_agreement"] == 0.5
    make(tmp_path, tiny, *args, "filter.min_agreement=1.0").run(stages=("generate", "filter"))
    now = path.read_text().splitlines()
    assert now[:len(first)] == first and len(now) == 6 * 4  # the drawn samples kept; the 4th drawn, as 1.0 needs
    decisions = json.loads((p.dir / "filter" / "STAGE.json").read_text())
    assert decisions["done"] and decisions["config"]["filter.min_agreement"] == 1.0


def test_row_13_failed_start_then_fixed_input_starts_again(tmp_path, tiny):
    # A model that cannot be loaded fails inside generate, after its record says "started" (bad data
    # fail before that: the task checks its data when the pipeline is made).
    args = ["distill.methods=[system1]", f"run_dir={tmp_path}/{{name}}", *[o for o in OVERRIDES if "distill" not in o]]
    with pytest.raises(UserError, match="model 'org/nomodelhere' is not"):
        pipeline.Pipeline(load_config(None, [*args, "model=org/nomodelhere"])).run(stages=("generate",))
    assert json.loads((tmp_path / "run" / "generate" / "STAGE.json").read_text())["done"] is False
    p = make(tmp_path, tiny, "distill.methods=[system1]")  # the model fixed (here: the in-process one)
    p.run(stages=("generate",))  # nothing was computed with the other model: no refusal
    assert len(read_records(p.dir / "generate" / "system1.jsonl", Trace)) == 6 * 2
    assert json.loads((p.dir / "generate" / "STAGE.json").read_text())["config"]["model"] == "embedded"
    with pytest.raises(UserError, match="finished 'generate' stage made with different model"):
        pipeline.Pipeline(load_config(None, [*args, "model=org/nomodelhere"])).run(stages=("generate",))


def test_a_stage_sees_only_the_config_it_declares(tmp_path, tiny, monkeypatch):
    p = make(tmp_path, tiny, "distill.methods=[system1]", "generation.adaptive=true", "generation.adaptive_rule=exact")
    view = p.view("generate")
    assert view.filter.min_agreement == 0.5 and view.generation.temperature == 0.0  # declared (the filter keys: adaptive)
    with pytest.raises(UndeclaredConfigKey, match="'generate' stage read config key 'train'"):
        view.train  # noqa: B018
    with pytest.raises(UndeclaredConfigKey, match="'filter.options'"):
        view.filter.options  # noqa: B018
    assert [s.method for s in view.distill.specs] == ["system1"]  # a property computed from declared keys
    # Without the adaptive rule the filter is not read, and not part of generate's fingerprint.
    plain = make(tmp_path, tiny, "distill.methods=[system1]")
    with pytest.raises(UndeclaredConfigKey):
        plain.view("generate").filter  # noqa: B018
    assert not [k for k in plain._fingerprint("generate") if k.startswith("filter")]
    # A stage that reads a key it does not declare fails when it runs (here the trainer's settings).
    monkeypatch.setitem(pipeline.STAGE_READS, "train", pipeline.Reads(keys=("model", "distill.methods"), writes=("train",),
                                                                       neutral=("distill.on_empty",)))
    plain.run(stages=("generate", "filter"))
    with pytest.raises(UndeclaredConfigKey, match="'train' stage read config key 'train'"):
        plain.run(stages=("train",))


# -- random damage to a finished run folder ------------------------------------------------------------------


SMALL_RUN = ["task.name=last_letter", "task.train_size=4", "task.test_size=3", "generation.num_samples=2",
             "generation.temperature=0", "generation.max_tokens=5", "generation.chunk_sequences=8",
             "distill.methods=[system1,rar_2step]", "train.max_steps=1", "train.batch_size=4",
             "evaluate.systems=[system1,rar_2step]", "evaluate.max_tokens=5", "evaluate.fidelity_samples=0",
             "backend.batch_size=8"]
DAMAGE = ("truncate", "garbage", "duplicate", "delete")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, embedded_tokenizer):
    """A finished tiny run, made once for the module: (its folder, the in-process base model)."""
    with pytest.MonkeyPatch.context() as mp:
        # As in test_pipeline: any last word is an answer, so the filter keeps inputs and training has data.
        mp.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
        base = (build_tiny_model(embedded_tokenizer), embedded_tokenizer)
        root = tmp_path_factory.mktemp("finished")
        pipeline.Pipeline(load_config(None, [*SMALL_RUN, f"run_dir={root}/{{name}}"]), loaded_base=base).run()
        yield root / "run", base


def _damage(path: Path, kind: str, draw) -> None:
    data = path.read_bytes()
    lines = data.splitlines(keepends=True) or [b""]
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(data[:draw(st.integers(0, max(len(data) - 1, 0)))])
    elif kind == "garbage":
        at, junk = draw(st.integers(0, len(lines))), draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b"") + b"\n"
        path.write_bytes(b"".join([*lines[:at], junk, *lines[at:]]))
    else:
        at = draw(st.integers(0, len(lines) - 1))
        path.write_bytes(b"".join([*lines[:at + 1], *lines[at:]]))


def _results(run: Path) -> dict:
    """What a run computed: the scores, the filter's yield, and every record (traces as multisets: a
    repaired trace file holds the same lines, regrouped; evaluation rows name the checkpoint by its path)."""
    results = json.loads((run / "results.json").read_text())
    out = {"scores": results["scores"], "filter": {k: {kk: vv for kk, vv in v.items() if kk != "train"}
                                                     for k, v in results["filter"].items()}}
    for f in sorted(run.glob("*/*.jsonl")):
        out[f.relative_to(run).as_posix()] = sorted(re.sub(r'"/[^"]*/run/', '"<run>/', f.read_text()).splitlines())
    return out


def _snapshot(run: Path) -> dict:
    return {f: f.read_bytes() for f in sorted(run.rglob("*")) if f.is_file() and f.name != ".lock"}


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_damage_to_a_finished_run(finished, data):
    """Truncation, garbage lines, duplicated lines and deleted files, one or two at a time, anywhere in a
    finished run folder: a rerun either completes with the same results or stops with one line,
    having written nothing."""
    src, base = finished
    files = sorted(f.relative_to(src).as_posix() for f in src.rglob("*") if f.is_file())
    targets = data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=2, unique=True), label="damaged")
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(LastLetter, "extract_answer", lambda self, text: text.split()[-1] if text.split() else "empty")
        run = Path(tmp) / "run"
        shutil.copytree(src, run)
        for name in targets:
            _damage(run / name, data.draw(st.sampled_from(DAMAGE), label=name), data.draw)
        before = _snapshot(run)
        try:
            pipeline.Pipeline(load_config(None, [*SMALL_RUN, f"run_dir={tmp}/{{name}}"]), loaded_base=base).run()
        except UserError as e:
            assert "\n" not in str(e) and _snapshot(run) == before
            return
        assert _results(run) == _results(src)


def test_the_report_says_what_a_rerun_repaired():
    from sys2distill.report import Results, markdown

    stages = {"generate": {"seconds": 1.0, "peak_rss_gib": 1.0, "generated_tokens": 9, "repaired": {
        "generate/rar_2step.jsonl": {"problem": "changed", "samples_kept": 11, "samples_regenerated": 1}}},
              "evaluate": {"seconds": 1.0, "peak_rss_gib": 1.0, "repaired": {"evaluate/rows.jsonl": {"problem": "damaged", "remade": True}}}}
    md = markdown(Results(task="t", model="m", extraction_rule="r", task_version=1, config={}, scores=[], comparisons=[],
                          verdicts=[], filter={}, stages=stages, versions={}))
    assert "- generate/rar_2step.jsonl: changed; 11 samples kept, 1 drawn again" in md
    assert "- evaluate/rows.jsonl: damaged; remade" in md

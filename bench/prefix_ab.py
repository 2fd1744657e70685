"""Cross-prompt prefix sharing in the ``hf`` backend: few-shot prompts, prefilled whole vs sharing their prefix.

    python bench/prefix_ab.py [--dtype bfloat16|float32] [--items 100] [--pairs 2]

Few-shot prompts (``direct_fewshot``, ``cot_fewshot`` on the ``lookup`` task) repeat the same four
exemplars before each question. With prefix sharing the backend prefills the prompts' common prefix
once and copies its cache to every row (``COMMON_PREFIX_MIN`` tokens or more); "whole" turns it off
(every prompt prefilled in full, the backend before the change). Both run in this process, interleaved
A/B/A/B, on the same prompts and seeds; the table gives the median seconds of each, their ratio and how
many generated texts are identical (fp32: all, if the shared prefill is exact; bf16 rounds the two
attention orders differently, so a few samples may move). The roof (fp32 or bf16 matmul GFLOP/s,
1024²) is measured before and after.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import sys2distill.backends.hf as hf
from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.tasks.lookup import Lookup

JOBS = {  # the positive control's two few-shot jobs: greedy System 1, 8 sampled CoT answers
    "direct_fewshot": SamplingParams(max_tokens=32),
    "cot_fewshot": SamplingParams(n=8, temperature=0.7, top_p=0.95, max_tokens=48, seed=0),
}
VARIANTS = {"whole prompts": 10**9, "shared prefix": hf.COMMON_PREFIX_MIN}


def roof(dtype: torch.dtype, n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    backend = HFBackend("embedded", dtype=args.dtype)
    task = Lookup(train_size=args.items, test_size=args.items)
    items = task.load("test")
    roofs = [roof(dtype)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, {len(items)} lookup items")
    print("| job | whole prompts, s | shared prefix, s | ratio (whole / shared) | identical texts |")
    print("|---|---|---|---|---|")
    for method, params in JOBS.items():
        prompts = [METHODS[method](task).prompt("answer", ex) for ex in items]
        seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
        texts: dict[str, list[str]] = {}
        for _ in range(args.pairs):
            for name, minimum in VARIANTS.items():
                hf.COMMON_PREFIX_MIN = minimum
                start = time.perf_counter()
                out = backend.generate(prompts, params)
                seconds[name].append(time.perf_counter() - start)
                texts[name] = [c.text for cs in out for c in cs]
        whole, shared = (statistics.median(seconds[name]) for name in VARIANTS)
        same = sum(a == b for a, b in zip(*texts.values()))
        print(f"| {method}, {params.n} × ≤{params.max_tokens} tokens | {whole:.1f} | {shared:.1f} | "
              f"{whole / shared:.2f} | {same}/{len(texts['whole prompts'])} |", flush=True)
    roofs.append(roof(dtype))
    print(f"roof ({args.dtype} 1024² matmul): {min(roofs):.0f}–{max(roofs):.0f} GFLOP/s")


if __name__ == "__main__":
    main()

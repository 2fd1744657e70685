"""Paired A/B of two `hf` backend decoding paths in one process (bench/README.md, "bf16 decoding").

    python bench/decode_ab.py --a fuse_projections=0,native_elementwise=0 [--b ""] [--dtype bfloat16]
                              [--prompts 16] [--pairs 6] [--threads N]

The job is ``engines.py``'s (coin-flip prompts × 8 samples × ≤ 128 tokens, temperature 0.7, top-p
0.95, seed 0). A and B are the same loaded model with backend attributes set as given (``name=N``,
0 or 1 for switches; B defaults to the backend's defaults); runs alternate A B, B A, ... so drift
hits both, and each run sits between two roof measurements in its dtype. Prints each run, the B ÷ A
tok/s ratio per pair and its median, the roof shares' medians, and how many sample texts A and B share.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from engines import PARAMS, job
from sampling import GFLOP_PER_TOKEN, matmul_gflops, warm_up

from sys2distill.backends.hf import HFBackend


def settings(text: str) -> dict[str, int]:
    pairs = [item.split("=") for item in text.split(",") if item]
    return {name: int(value) for name, value in pairs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="backend attributes of A, e.g. fuse_projections=0,native_elementwise=0")
    ap.add_argument("--b", default="", help="backend attributes of B (default: the backend's defaults)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = HFBackend(dtype=args.dtype)
    defaults = {name: getattr(backend, name) for name in {**settings(args.a), **settings(args.b)}}
    variants = {"A": {**defaults, **settings(args.a)}, "B": {**defaults, **settings(args.b)}}
    prompts = job(args.prompts)
    for attributes in variants.values():  # compiles and packs outside the timing
        vars(backend).update(attributes)
        warm_up(backend, prompts)
    runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    texts: dict[str, list[str]] = {}
    dtype = getattr(torch, args.dtype)
    print(f"{torch.get_num_threads()} threads; A = {variants['A']}, B = {variants['B']}", flush=True)
    for i in range(args.pairs):
        for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
            vars(backend).update(variants[name])
            before = matmul_gflops(dtype)
            start = time.perf_counter()
            out = backend.generate(prompts, PARAMS)
            seconds = time.perf_counter() - start
            roof = max(before, matmul_gflops(dtype)) / GFLOP_PER_TOKEN
            tokens = sum(c.completion_tokens for cs in out for c in cs)
            texts.setdefault(name, [c.text for cs in out for c in cs])
            runs[name].append((tokens / seconds, tokens / seconds / roof))
            print(f"  {name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s, "
                  f"{100 * tokens / seconds / roof:.1f}% of the roof ({roof:.0f} tok/s)", flush=True)
    ratios = [b[0] / a[0] for a, b in zip(runs["A"], runs["B"])]
    same = sum(a == b for a, b in zip(texts["A"], texts["B"]))
    print(f"\nB ÷ A tok/s per pair: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
    print(f"% of roof, medians: A {100 * statistics.median(r[1] for r in runs['A']):.1f}%, "
          f"B {100 * statistics.median(r[1] for r in runs['B']):.1f}%")
    print(f"identical sample texts: {same} / {len(texts['A'])}")


if __name__ == "__main__":
    main()

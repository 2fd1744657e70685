"""Sampling throughput of the HF backend against a naive loop, HF's batched generate and the
compute roof, measured side by side in one run (issue: performance).

    python bench/sampling.py [--prompts 64] [--samples 8] [--max-tokens 128] [--naive-prompts 4]

The job is self-consistency sampling on coin-flip inputs (temperature 0.7, top-p 0.95, early
stop at end of turn). The roof is measured here too: matmul GFLOP/s ÷ 0.27 GFLOP per generated
token (≈ 2 × 135M parameters). bf16 is checked against fp32 on the same greedy prompts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend
from sys2distill.models import load_model_and_tokenizer
from sys2distill.tasks import REGISTRY

GFLOP_PER_TOKEN = 0.27


def matmul_gflops(dtype: torch.dtype, size: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 * reps / statistics.median(times) / 1e9


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def naive(model, tok, prompts, samples, max_tokens) -> tuple[int, float]:
    """One ``generate`` call per prompt and per sample, as a first script would do it."""
    tokens, start = 0, time.perf_counter()
    for p in prompts:
        enc = tok(tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True), return_tensors="pt",
                  add_special_tokens=False)
        for _ in range(samples):
            out = model.generate(**enc, do_sample=True, temperature=0.7, top_p=0.95, max_new_tokens=max_tokens,
                                 pad_token_id=tok.pad_token_id)
            tokens += out.shape[1] - enc.input_ids.shape[1]
    return tokens, time.perf_counter() - start


def hf_batched(model, tok, prompts, samples, max_tokens, batch_prompts=8) -> tuple[int, float]:
    """transformers' own batched sampling: left padding + ``num_return_sequences``."""
    tokens, start = 0, time.perf_counter()
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    for i in range(0, len(texts), batch_prompts):
        enc = tok(texts[i:i + batch_prompts], return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False)
        out = model.generate(**enc, do_sample=True, temperature=0.7, top_p=0.95, max_new_tokens=max_tokens,
                             num_return_sequences=samples, pad_token_id=tok.pad_token_id)
        new = out[:, enc.input_ids.shape[1]:]
        # Count up to and including the first end-of-turn token, as the backend does.
        for row in new.tolist():
            tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return tokens, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--naive-prompts", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant; the table shows the median")
    args = ap.parse_args()
    torch.manual_seed(0)
    examples = REGISTRY["coin_flip"](train_size=args.prompts, test_size=1).load("train")
    prompts = [[{"role": "user", "content": ex.question}] for ex in examples]
    params = SamplingParams(n=args.samples, temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)

    roof = {d: matmul_gflops(getattr(torch, d)) / GFLOP_PER_TOKEN for d in ("float32", "bfloat16")}
    rows = []

    def median_run(fn) -> tuple[int, float]:
        """Median tokens/s over ``--repeats`` runs (tokens and seconds of the median run)."""
        runs = sorted((fn() for _ in range(args.repeats)), key=lambda r: r[0] / r[1])
        return runs[len(runs) // 2]

    fp32 = load_model_and_tokenizer("embedded", "float32")
    n_tok, sec = median_run(lambda: naive(*fp32, prompts[: args.naive_prompts], args.samples, args.max_tokens))
    rows.append(("naive generate loop", "float32", f"{args.naive_prompts}×{args.samples}", n_tok, sec))
    n_tok, sec = median_run(lambda: hf_batched(*fp32, prompts, args.samples, args.max_tokens))
    rows.append(("HF generate, batched", "float32", f"{args.prompts}×{args.samples}", n_tok, sec))
    results = {}
    for dtype in ("float32", "bfloat16"):
        loaded = fp32 if dtype == "float32" else load_model_and_tokenizer("embedded", dtype)
        backend = HFBackend(loaded=loaded, batch_size=args.batch_size)

        def ours():
            out, sec = timed(lambda: backend.generate(prompts, params))
            return sum(c.completion_tokens for cs in out for c in cs), sec

        rows.append(("sys2distill hf backend", dtype, f"{args.prompts}×{args.samples}", *median_run(ours)))
        results[dtype] = backend.generate(prompts, SamplingParams(max_tokens=args.max_tokens))  # greedy, for agreement

    naive_tps = rows[0][3] / rows[0][4]
    print(f"median of {args.repeats} runs per variant; roof: float32 {roof['float32']:.0f} tok/s, bfloat16 {roof['bfloat16']:.0f} tok/s "
          f"(matmul GFLOP/s ÷ {GFLOP_PER_TOKEN} GFLOP/token)\n")
    print("| variant | dtype | prompts×samples | tokens | seconds | tok/s | × naive | % of roof |")
    print("|---|---|---|---|---|---|---|---|")
    for name, dtype, size, n_tok, sec in rows:
        tps = n_tok / sec
        print(f"| {name} | {dtype} | {size} | {n_tok} | {sec:.1f} | {tps:.1f} | {tps / naive_tps:.1f} | {100 * tps / roof[dtype]:.0f}% |")
    same = sum(a[0].text == b[0].text for a, b in zip(results["float32"], results["bfloat16"]))
    task = REGISTRY["coin_flip"](train_size=1, test_size=1)
    same_answer = sum(task.extract_answer(a[0].text) == task.extract_answer(b[0].text)
                      for a, b in zip(results["float32"], results["bfloat16"]))
    print(f"\nbf16 vs fp32, greedy on the {len(prompts)} prompts: identical text {same}/{len(prompts)}, "
          f"identical extracted answer {same_answer}/{len(prompts)}")


if __name__ == "__main__":
    main()

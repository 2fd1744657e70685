"""Sampling throughput of the HF backend against a naive loop, HF's batched generate and the
compute roof, measured side by side in one run (issue: performance).

    python bench/sampling.py [--prompts 64] [--samples 8] [--max-tokens 128] [--naive-prompts 2]
                             [--baseline-prompts 16] [--batch-sizes 64,256] [--repeats 3]
                             [--max-batch-tokens 65536] [--no-bf16]

The job is self-consistency sampling on coin-flip inputs (temperature 0.7, top-p 0.95, early
stop at end of turn). The roof is measured here too, around every run: matmul GFLOP/s ÷ 0.27
GFLOP per generated token (≈ 2 × 135M parameters). The slow baselines run on fewer prompts
(tokens/s is a rate; their batches are as full as at 64 prompts). bf16 is checked against fp32
on the same greedy prompts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend
from sys2distill.backends.shared_prefix import KV_CHUNK
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


def warm_up(backend, prompts) -> None:
    """One short sampling call outside the timing: the bf16 path compiles its attention kernel on first
    use (a one-time cost per process, bench/README.md "bf16 decoding"), once for one chunk of generated
    cache and once for more (``shared_prefix.KV_CHUNK`` positions each)."""
    backend.generate(prompts[:2], SamplingParams(n=8, temperature=0.7, top_p=0.95, max_tokens=KV_CHUNK + 2, seed=0))


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
                  add_special_tokens=False).to(model.device)
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
    ap.add_argument("--naive-prompts", type=int, default=2, help="prompts for the naive loop (it is slow)")
    ap.add_argument("--baseline-prompts", type=int, default=16, help="prompts for HF batched generate and bf16")
    ap.add_argument("--batch-sizes", default="64,256", help="backend.batch_size values to compare (fp32)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant; the table shows the median")
    ap.add_argument("--max-batch-tokens", type=int, default=65536, help="backend.max_batch_tokens (KV positions)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 run and the bf16/fp32 agreement check")
    args = ap.parse_args()
    torch.manual_seed(0)
    examples = REGISTRY["coin_flip"](train_size=args.prompts, test_size=1).load("train")
    prompts = [[{"role": "user", "content": ex.question}] for ex in examples]
    params = SamplingParams(n=args.samples, temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    rows = []

    def measure(name: str, dtype: str, n_prompts: int, fn) -> None:
        """``--repeats`` runs, each between two roof measurements: this VM's matmul speed drifts by
        2× over minutes, so a ratio is only meaningful against the roof of its own run. The higher
        of the two is the roof (the stricter ratio)."""
        runs = []
        for _ in range(args.repeats):
            before = matmul_gflops(getattr(torch, dtype))
            n_tok, sec = fn()
            roof = max(before, matmul_gflops(getattr(torch, dtype))) / GFLOP_PER_TOKEN
            runs.append((n_tok / sec, n_tok / sec / roof, roof, n_tok, sec))
        med = statistics.median
        rows.append((name, dtype, f"{n_prompts}×{args.samples}", runs[0][3], med(r[4] for r in runs),
                     med(r[0] for r in runs), med(r[1] for r in runs), med(r[2] for r in runs)))
        print(f"  {name} ({dtype}): " + ", ".join(f"{r[0]:.1f} tok/s = {100 * r[1]:.0f}% of {r[2]:.0f}" for r in runs),
              flush=True)

    fp32 = load_model_and_tokenizer("embedded", "float32")
    measure("naive generate loop", "float32", args.naive_prompts,
            lambda: naive(*fp32, prompts[: args.naive_prompts], args.samples, args.max_tokens))
    measure("HF generate, batched (8 prompts per call)", "float32", args.baseline_prompts,
            lambda: hf_batched(*fp32, prompts[: args.baseline_prompts], args.samples, args.max_tokens))

    def ours(backend, subset):
        out, sec = timed(lambda: backend.generate(subset, params))
        return sum(c.completion_tokens for cs in out for c in cs), sec

    for bs in map(int, args.batch_sizes.split(",")):
        backend = HFBackend(loaded=fp32, batch_size=bs, max_batch_tokens=args.max_batch_tokens)
        measure(f"sys2distill hf backend, batch {bs}", "float32", args.prompts, lambda: ours(backend, prompts))
    if not args.no_bf16:
        bf16 = load_model_and_tokenizer("embedded", "bfloat16")
        backend = HFBackend(loaded=bf16, batch_size=max(map(int, args.batch_sizes.split(","))))
        warm_up(backend, prompts)
        measure(f"sys2distill hf backend, batch {backend.batch_size}", "bfloat16", args.baseline_prompts,
                lambda: ours(backend, prompts[: args.baseline_prompts]))

    naive_tps = rows[0][5]
    print(f"\nmedian of {args.repeats} runs per variant, each against the higher roof measured just before and after it "
          f"(matmul GFLOP/s ÷ {GFLOP_PER_TOKEN} GFLOP/token)\n")
    print("| variant | dtype | prompts×samples | tokens | seconds | tok/s | × naive | roof tok/s | % of roof |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, dtype, size, n_tok, sec, tps, share, roof in rows:
        print(f"| {name} | {dtype} | {size} | {n_tok} | {sec:.1f} | {tps:.1f} | {tps / naive_tps:.1f} | {roof:.0f} "
              f"| {100 * share:.0f}% |")
    if args.no_bf16:
        return
    greedy = SamplingParams(max_tokens=args.max_tokens)
    subset = prompts[: args.baseline_prompts]
    a_out, b_out = HFBackend(loaded=fp32).generate(subset, greedy), HFBackend(loaded=bf16).generate(subset, greedy)
    same = sum(a[0].text == b[0].text for a, b in zip(a_out, b_out))
    task = REGISTRY["coin_flip"](train_size=1, test_size=1)
    same_answer = sum(task.extract_answer(a[0].text) == task.extract_answer(b[0].text) for a, b in zip(a_out, b_out))
    print(f"\nbf16 vs fp32, greedy on {len(subset)} prompts: identical text {same}/{len(subset)}, "
          f"identical extracted answer {same_answer}/{len(subset)}")


if __name__ == "__main__":
    main()

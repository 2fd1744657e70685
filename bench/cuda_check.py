"""The ``hf`` backend on a CUDA GPU: sampling throughput against transformers' batched ``generate``,
and the shared-prefix path's samples against the per-row cache's (issue: performance).

CI and this project's CPU machine never run it; run it where a GPU is. It needs torch and
transformers beside sys2distill (no pydantic/typer), and the embedded model's converted folder
(``$SYS2DISTILL_CACHE``) for the tokenizer and config::

    python bench/cuda_check.py                 # the embedded model's architecture, random weights
    python bench/cuda_check.py --model PATH    # real weights: a checkpoint folder, a Hub id or "embedded"

Random weights rarely draw end of turn, so every row runs to ``--max-tokens``: the same work for
both sides. The table shows the median of ``--repeats`` runs; the unit tests run on the GPU with
``SYS2DISTILL_TEST_DEVICE=cuda python -m pytest tests/test_hf_backend.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend
from sys2distill.models import embedded_checkpoint, load_model_and_tokenizer
from sys2distill.tasks import REGISTRY

from sampling import hf_batched  # bench/sampling.py: transformers' batched sampling, the same job


def load(model: str | None, dtype: str, device: str):
    """A real checkpoint through the project's loader, or (``None``) the embedded model's
    architecture with random weights: the weights are not needed for speed."""
    if model is not None:
        return load_model_and_tokenizer(model, dtype, device)
    folder = embedded_checkpoint()
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=getattr(torch, dtype))
    return net.to(device).eval(), tok


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats):
    runs = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        tokens = fn()
        synchronize()
        runs.append((tokens, time.perf_counter() - start))
    return runs[0][0], statistics.median(t for _, t in runs), [n / t for n, t in runs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint folder (default: embedded architecture, random weights)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    args = ap.parse_args()
    examples = REGISTRY["coin_flip"](train_size=args.prompts, test_size=1).load("train")
    prompts = [[{"role": "user", "content": ex.question}] for ex in examples]
    params = SamplingParams(n=args.samples, temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)  # as hf_batched's
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"device: {name}; torch {torch.__version__}; "
          f"{args.prompts} prompts × {args.samples} samples × ≤ {args.max_tokens} tokens", flush=True)
    rows = []
    for dtype in args.dtypes.split(","):
        net, tok = load(args.model, dtype, args.device)
        # Every prompt in one batch: GPU memory is not the limit at this size.
        shared, per_row = (HFBackend(loaded=(net, tok), batch_size=args.prompts * args.samples, max_batch_tokens=1 << 24)
                           for _ in range(2))
        shared.shared_prefix, per_row.shared_prefix = True, False  # the backend's default on a GPU: per-row
        # Same seeds, same samples? (float rounding of two attention orders can move a draw.)
        a, b = (x.generate(prompts[:16], params) for x in (shared, per_row))
        same = sum(x.text == y.text for cs, ds in zip(a, b) for x, y in zip(cs, ds))
        print(f"{dtype}: shared-prefix vs per-row cache, same seeds: {same}/{len(a) * args.samples} identical samples",
              flush=True)
        variants = [
            ("transformers generate, all prompts in one call", lambda: hf_batched(net, tok, prompts, args.samples, args.max_tokens, len(prompts))[0]),
            ("transformers generate, 8 prompts per call", lambda: hf_batched(net, tok, prompts, args.samples, args.max_tokens, 8)[0]),
            ("sys2distill hf, per-row cache (the GPU default)", lambda: sum(c.completion_tokens for cs in per_row.generate(prompts, params) for c in cs)),
            ("sys2distill hf, shared prefix (the CPU default)", lambda: sum(c.completion_tokens for cs in shared.generate(prompts, params) for c in cs)),
        ]
        base = None
        for name, fn in variants:  # the median drops a first run's one-off costs (cuBLAS set-up)
            tokens, sec, rates = timed(fn, args.repeats)
            tps = tokens / sec
            base = base or tps
            rows.append((dtype, name, tokens, sec, tps, tps / base))
            print(f"  {name}: " + ", ".join(f"{r:.0f}" for r in rates) + " tok/s", flush=True)
        del net, shared, per_row
        torch.cuda.empty_cache()
    print(f"\nmedian of {args.repeats} runs\n")
    print("| dtype | variant | tokens | seconds | tok/s | × first row |")
    print("|---|---|---|---|---|---|")
    for dtype, name, tokens, sec, tps, ratio in rows:
        print(f"| {dtype} | {name} | {tokens} | {sec:.2f} | {tps:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

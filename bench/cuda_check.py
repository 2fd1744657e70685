"""The ``hf`` backend on a CUDA GPU: sampling throughput against transformers' batched ``generate``,
and the shared-prefix path's samples against the per-row cache's (issue: performance).

CI and this project's CPU machine never run it; run it where a GPU is. It needs torch and
transformers beside sys2distill (no pydantic/typer), and the embedded model's converted folder
(``$SYS2DISTILL_CACHE``) for the tokenizer and config::

    python bench/cuda_check.py                 # the embedded model's architecture, random weights
    python bench/cuda_check.py --model PATH    # a real checkpoint folder

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
from sys2distill.models import embedded_checkpoint
from sys2distill.tasks import REGISTRY


def load(model: str | None, dtype: torch.dtype, device: str):
    folder = model or embedded_checkpoint()
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model is None:  # the architecture only: the weights are not needed for speed
        torch.manual_seed(0)
        net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dtype)
    else:
        net = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return net.to(device).eval(), tok


def hf_generate(net, tok, prompts, params, prompts_per_call):
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tokens = 0
    for i in range(0, len(texts), prompts_per_call):
        enc = tok(texts[i:i + prompts_per_call], return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False).to(net.device)
        out = net.generate(**enc, do_sample=True, temperature=params.temperature, top_p=params.top_p,
                           max_new_tokens=params.max_tokens, num_return_sequences=params.n,
                           pad_token_id=tok.pad_token_id)
        for row in out[:, enc.input_ids.shape[1]:].tolist():  # up to and including end of turn
            tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return tokens


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
    params = SamplingParams(n=args.samples, temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"device: {name}; torch {torch.__version__}; "
          f"{args.prompts} prompts × {args.samples} samples × ≤ {args.max_tokens} tokens", flush=True)
    rows = []
    for dtype in args.dtypes.split(","):
        net, tok = load(args.model, getattr(torch, dtype), args.device)
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
            ("transformers generate, all prompts in one call", lambda: hf_generate(net, tok, prompts, params, len(prompts))),
            ("transformers generate, 8 prompts per call", lambda: hf_generate(net, tok, prompts, params, 8)),
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

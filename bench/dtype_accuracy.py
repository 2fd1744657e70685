"""Does bf16 change accuracy? The same greedy evaluation in fp32 and in bf16, side by side (issue 19).

    python bench/dtype_accuracy.py [--task coin_flip] [--source rar] [--items 150] [--methods system1,rar_2step]
                                   [--max-tokens 96] [--out-dir runs/dtype_accuracy] [--only METHOD:DTYPE]

``backend.dtype: auto`` computes in bf16 on CPUs with native bf16, which changes samples and greedy
text (bench/README.md), so the question is whether it changes accuracy beyond noise. Each method
answers the same test items greedily with the ``hf`` backend in fp32 and in bf16; the table gives each
accuracy with a 95% bootstrap interval over items, and the paired difference (bf16 − fp32) with its
own paired bootstrap interval, plus how many items changed answer in each direction. Each
(method, dtype) part saves its per-item results in ``--out-dir`` and is skipped when they are there,
so parts can run as separate processes (``--only``) and a last plain run prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.tasks import REGISTRY as TASKS


def bootstrap(values: list[float], reps: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over items resampled with replacement."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="coin_flip")
    ap.add_argument("--source", default="rar", help="rar: the RaR paper's released test items; synthetic")
    ap.add_argument("--items", type=int, default=150)
    ap.add_argument("--methods", default="system1,rar_2step")
    ap.add_argument("--max-tokens", type=int, default=96, help="per step (the shipped configs' evaluate.max_tokens)")
    ap.add_argument("--out-dir", default="runs/dtype_accuracy")
    ap.add_argument("--only", help="METHOD:DTYPE: compute this part only")
    args = ap.parse_args()
    task = TASKS[args.task](train_size=1, test_size=args.items, source=args.source)
    examples = task.load("test")[: args.items]
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [(m, d) for d in ("float32", "bfloat16") for m in args.methods.split(",")]

    def part(name: str, dtype: str) -> Path:
        return out / f"{args.task}-{args.source}-{len(examples)}-{args.max_tokens}-{name}-{dtype}.json"

    for name, dtype in parts if args.only is None else [tuple(args.only.split(":"))]:
        path = part(name, dtype)
        if path.exists():
            continue
        start = time.perf_counter()
        traces = METHODS[name](task).run(examples, HFBackend("embedded", dtype=dtype), params)
        rows = [{"id": ex.id, "answer": t[0].answer, "correct": int(task.correct(t[0].answer, ex)), "tokens": t[0].tokens}
                for t, ex in zip(traces, examples)]
        path.write_text(json.dumps(rows))
        print(f"  {name} {dtype}: {sum(r['correct'] for r in rows)}/{len(rows)} in {time.perf_counter() - start:.0f} s",
              flush=True)
    if args.only:
        return
    correct: dict[tuple[str, str], list[int]] = {}
    tokens: dict[tuple[str, str], float] = {}
    for name, dtype in parts:
        rows = json.loads(part(name, dtype).read_text())
        correct[name, dtype] = [r["correct"] for r in rows]
        tokens[name, dtype] = sum(r["tokens"] for r in rows) / len(rows)
    print(f"\n{args.task} ({args.source}), {len(examples)} test items, greedy, {args.max_tokens} tokens per step\n")
    print("| method | fp32 accuracy (95% CI) | bf16 accuracy (95% CI) | bf16 − fp32 (paired 95% CI) "
          "| items fp32 ✓ bf16 ✗ / fp32 ✗ bf16 ✓ | mean tokens fp32 / bf16 |")
    print("|---|---|---|---|---|---|")
    for name in args.methods.split(","):
        a, b = correct[name, "float32"], correct[name, "bfloat16"]
        diff = [y - x for x, y in zip(a, b)]
        lo_a, hi_a = bootstrap(a)
        lo_b, hi_b = bootstrap(b)
        lo_d, hi_d = bootstrap(diff)
        pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
        print(f"| {name} | {pct(sum(a) / len(a))} ({pct(lo_a)}–{pct(hi_a)}) | {pct(sum(b) / len(b))} ({pct(lo_b)}–"
              f"{pct(hi_b)}) | {100 * sum(diff) / len(diff):+.1f} pts ({100 * lo_d:+.1f} to {100 * hi_d:+.1f}) "
              f"| {sum(x > y for x, y in zip(a, b))} / {sum(y > x for x, y in zip(a, b))} "
              f"| {tokens[name, 'float32']:.1f} / {tokens[name, 'bfloat16']:.1f} |")


if __name__ == "__main__":
    main()

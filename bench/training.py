"""SFT throughput on the embedded model against the 6 × params FLOP roof, with and without
length grouping, measured side by side in one run (issue: performance).

    python bench/training.py [--records 96] [--steps 12] [--batch-size 8] [--repeats 1]

Records mimic distillation data: System 1 prompts with targets of mixed length (a short
answer, or a System 2 final response). Tokens/s counts real (non-padding) tokens.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sampling import matmul_gflops  # bench/sampling.py: the same roof measurement

from sys2distill.config import TrainConfig
from sys2distill.models import load_model_and_tokenizer
from sys2distill.records import DistillRecord, write_jsonl
from sys2distill.tasks import REGISTRY
from sys2distill.trainer import build_trainer
from trl import SFTTrainer

PARAMS = 134.5e6


def records(n: int) -> list[DistillRecord]:
    rng = random.Random(0)
    filler = ("The coin started heads up. Each flip reverses it, so we count the flips and check whether "
              "their number is even. ").split()
    out = []
    for ex in REGISTRY["coin_flip"](train_size=n, test_size=1).load("train"):
        answer = rng.choice(["Yes.", "No."]) if rng.random() < 0.5 else " ".join(filler * rng.randint(1, 4)) + " So: yes."
        out.append(DistillRecord(ex.id, [{"role": "user", "content": ex.question}],
                                 [{"role": "assistant", "content": answer}], {}))
    return out


def run(data: Path, cfg: TrainConfig, hf_grouping: bool = False) -> dict:
    trainer = build_trainer(data, "embedded", Path(tempfile.mkdtemp()), cfg, loaded=load_model_and_tokenizer("embedded"))
    if hf_grouping:  # transformers' own LengthGroupedSampler, for comparison
        trainer.args.train_sampling_strategy = "group_by_length"
        trainer._get_train_sampler = lambda *a: SFTTrainer._get_train_sampler(trainer, *a)
    real = total = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i == cfg.max_steps:
            break
        mask = batch["attention_mask"] if "attention_mask" in batch else batch["input_ids"] != -1
        real += int(mask.sum())
        total += mask.numel()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"steps": cfg.max_steps, "seconds": seconds, "tokens": real, "padding": 1 - real / total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=96)
    ap.add_argument("--steps", type=int, default=12, help="12 × batch 8 = one epoch of 96 records")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1, help="runs per variant, interleaved; the table shows medians")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp()) / "data.jsonl"
    write_jsonl(data, records(args.records))
    print(f"roof: fp32 matmul GFLOP/s ÷ 6 × {PARAMS / 1e6:.1f}M params, measured before each run; "
          f"median of {args.repeats} run(s) per variant, the variants interleaved\n")
    print("| batching | steps | real tokens | padding | seconds | tok/s | roof tok/s | % of roof | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    variants = [("random order", False, False), ("transformers group_by_length (megabatches)", True, True),
                ("sys2distill length buckets (train.group_by_length)", True, False)]
    runs: dict[str, list] = {label: [] for label, _, _ in variants}
    for _ in range(args.repeats):  # interleaved, so a drift in the VM's speed hits every variant alike
        for label, group, hf in variants:
            cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, group_by_length=group)
            roof = matmul_gflops(torch.float32) / (6 * PARAMS / 1e9)
            r = run(data, cfg, hf_grouping=hf)
            runs[label].append((r, roof, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20))
    med = statistics.median
    for label, rs in runs.items():
        r = rs[0][0]  # tokens and padding are the same in every run
        tps = [x["tokens"] / x["seconds"] for x, _, _ in rs]
        share = med(t / roof for t, (_, roof, _) in zip(tps, rs))
        print(f"| {label} | {r['steps']} | {r['tokens']} | {100 * r['padding']:.1f}% "
              f"| {med(x['seconds'] for x, _, _ in rs):.1f} | {med(tps):.0f} | {med(roof for _, roof, _ in rs):.0f} "
              f"| {100 * share:.0f}% | {max(m for _, _, m in rs):.2f} |", flush=True)


if __name__ == "__main__":
    main()

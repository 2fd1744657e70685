"""SFT throughput on the embedded model against the 6 × params FLOP roof, with and without
length grouping, measured side by side in one run (issue: performance).

    python bench/training.py [--records 96] [--steps 6] [--batch-size 8]

Records mimic distillation data: System 1 prompts with targets of mixed length (a short
answer, or a System 2 final response). Tokens/s counts real (non-padding) tokens.
"""

from __future__ import annotations

import argparse
import random
import resource
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


def run(data: Path, cfg: TrainConfig) -> dict:
    trainer = build_trainer(data, "embedded", Path(tempfile.mkdtemp()), cfg, loaded=load_model_and_tokenizer("embedded"))
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
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    roof = matmul_gflops(torch.float32) / (6 * PARAMS / 1e9)
    data = Path(tempfile.mkdtemp()) / "data.jsonl"
    write_jsonl(data, records(args.records))
    print(f"roof: {roof:.0f} tok/s (fp32 matmul GFLOP/s ÷ 6 × {PARAMS / 1e6:.1f}M params)\n")
    print("| batching | steps | real tokens | padding | seconds | tok/s | % of roof | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for group in (False, True):
        cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, group_by_length=group)
        r = run(data, cfg)
        tps = r["tokens"] / r["seconds"]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"| {'grouped by length' if group else 'random'} | {r['steps']} | {r['tokens']} | {100 * r['padding']:.1f}% "
              f"| {r['seconds']:.1f} | {tps:.0f} | {100 * tps / roof:.0f}% | {rss:.2f} |")


if __name__ == "__main__":
    main()

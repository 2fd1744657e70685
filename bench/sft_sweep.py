"""Which SFT settings make a distilled model learn its targets? Scored without test labels.

arXiv 2407.06023 trains the same model on (input → filtered System 2 answer) pairs; the paper's
70B settings (lr 5.5e-6) say little about a 135M or 0.5B model. This sweep runs a config's
generate and filter stages, holds out a seeded share of the *kept* unlabeled train inputs (a dev
slice: never a test item, never a label), trains one model per candidate setting on the rest and
scores each by

- agreement: how often its greedy answer to the System 1 prompt equals the filter's answer on the
  held-out inputs (what distillation asks it to reproduce), with a Wilson 95% interval;
- length ratio: its mean generated tokens / the held-out targets' mean tokens (1 = it learned
  the targets' form; far above 1 = it still rambles like the base model);
- its answers' spread (the most common answer's share): a model that learnt one answer for every
  input scores exactly the "constant" row, the fit targets' most common answer given to every
  held-out input, which the table prints first;
- wall time of training, and the process's peak memory after each row.

    python bench/sft_sweep.py CONFIG [key=value ...] [--entry rar_2step] [--dev-share 0.3]
        [--grid full:1e-5:3 full:1e-4:3 lora:1e-3:3 ...]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ["base", "full:1e-5:3", "full:3e-5:3", "full:1e-4:3", "full:3e-4:3", "full:1e-4:6", "lora:3e-4:3",
        "lora:1e-3:3", "lora:1e-3:6"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--entry", help="distill entry to sweep (default: the first that is not system1)")
    ap.add_argument("--dev-share", type=float, default=0.3)
    ap.add_argument("--grid", nargs="+", default=GRID, help="mode:lr:epochs, or 'base' (the untrained model)")
    ap.add_argument("--out", default=None, help="where the sweep's models and table go (default runs/sft_sweep/<name>); "
                                                "generate and filter run in the config's own run folder")
    args = ap.parse_args()

    from sys2distill.backends.base import SamplingParams
    from sys2distill.backends.build import build_backend
    from sys2distill.config import load_config
    from sys2distill.models import load_model_and_tokenizer
    from sys2distill.pipeline import Pipeline
    from sys2distill.records import DistillRecord, read_records, write_jsonl
    from sys2distill.stats import accuracy_interval
    from sys2distill.tasks.base import normalize
    from sys2distill.trainer import train

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out or ROOT / "runs" / "sft_sweep" / cfg.name)
    p = Pipeline(cfg)  # its own run folder: a later `sys2distill run` of the same config reuses these stages
    p.run(stages=("generate", "filter"))
    entry = args.entry or next(s.key for s in cfg.distill.specs if s.method != "system1")
    records = read_records(p.dir / "distill" / f"{entry}.jsonl", DistillRecord)
    order = list(range(len(records)))
    random.Random(f"sft-sweep-{cfg.task.seed}").shuffle(order)
    n_dev = max(1, round(args.dev_share * len(records)))
    dev, fit = [records[i] for i in order[:n_dev]], [records[i] for i in order[n_dev:]]
    write_jsonl(out / "fit.jsonl", fit)
    _, tokenizer = load_model_and_tokenizer(cfg.model)
    lengths = [len(tokenizer(r.completion[0]["content"], add_special_tokens=False).input_ids) for r in dev]
    target_tokens, target_median = sum(lengths) / len(dev), statistics.median(lengths)
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=cfg.evaluate.max_tokens)
    print(f"{entry}: {len(records)} kept inputs -> {len(fit)} to train on, {len(dev)} held out; "
          f"held-out targets average {target_tokens:.1f} tokens (median {target_median})")
    common, _ = Counter(r.metadata["answer"] for r in fit).most_common(1)[0]
    agree = sum(r.metadata["answer"] == common for r in dev)
    lo, hi = accuracy_interval(agree, len(dev))
    rows = [{"setting": f"constant '{common}'", "agreement": agree / len(dev), "ci": [lo, hi], "tokens": None,
             "length_ratio": None, "train_seconds": None, "steps": None, "no_answer": 0.0, "top_answer_share": 1.0}]
    print(f"constant {common!r}: agreement {agree}/{len(dev)} = {100 * agree / len(dev):.1f}% ({100 * lo:.0f}–{100 * hi:.0f})")
    for cand in args.grid:
        folder = out / cand.replace(":", "_")
        seconds = steps = None
        if cand == "base":
            model = cfg.model
        else:
            mode, lr, epochs = cand.split(":")
            tc = cfg.train.model_copy(update={"mode": mode, "learning_rate": float(lr), "epochs": float(epochs)})
            if not (folder / "DONE.json").exists():
                train(out / "fit.jsonl", cfg.model, folder, tc)
            done = json.loads((folder / "DONE.json").read_text())
            seconds, steps, model = done["train_seconds"], done["steps"], str(folder)
        backend = build_backend(cfg.backend, model, out, checkpoint=cand != "base")
        outs = backend.generate([r.prompt for r in dev], greedy)
        del backend
        answers = [p.task.extract_answer(c[0].text) for c in outs]
        agree = sum(a is not None and normalize(a) == r.metadata["answer"] for a, r in zip(answers, dev))
        lo, hi = accuracy_interval(agree, len(dev))
        tokens = sum(c[0].completion_tokens for c in outs) / len(dev)
        top_share = Counter(normalize(a) if a is not None else None for a in answers).most_common(1)[0][1] / len(dev)
        rows.append({"setting": cand, "agreement": agree / len(dev), "ci": [lo, hi], "tokens": tokens,
                     "length_ratio": tokens / target_tokens, "train_seconds": seconds, "steps": steps,
                     "no_answer": sum(a is None for a in answers) / len(dev), "top_answer_share": top_share,
                     # the process's peak so far: rows run in order, so a row's own peak is at most this
                     "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
        print(f"{cand:14s} agreement {agree}/{len(dev)} = {100 * agree / len(dev):.1f}% ({100 * lo:.0f}–{100 * hi:.0f}) "
              f"tokens {tokens:.1f} (x{tokens / target_tokens:.2f} of target) no answer {rows[-1]['no_answer']:.0%} "
              f"top answer {top_share:.0%} "
              f"train {seconds if seconds is not None else '-'} s / {steps if steps is not None else '-'} steps "
              f"peak RSS so far {rows[-1]['peak_rss_gib']} GiB", flush=True)
    (out / "sweep.json").write_text(json.dumps({"config": cfg.model_dump(), "entry": entry, "fit": len(fit), "dev": len(dev),
                                                "target_tokens": target_tokens, "target_median_tokens": target_median, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

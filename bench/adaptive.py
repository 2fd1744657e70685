"""Adaptive consistency vs fixed-N self-consistency, side by side on the same samples (issue: performance).

    python bench/adaptive.py runs/rar_coin_flip/generate/rar_2step.jsonl [--n N] [--min-agreement t]
                             [--verify 8 --config configs/rar_coin_flip.yaml]
    python bench/adaptive.py --synthetic 0.3 [--n 32]

Sample j of an input is seeded by (seed, prompt, j) alone, so an adaptive run draws exactly the
first samples of the fixed-N run and stops early. This script therefore reads a finished fixed-N
generate file, replays each stopping rule on its sample prefixes, and reports per rule: samples
and generated tokens spent, the majority filter's yield, and how many kept answers are the same as
fixed N's. ``--verify K`` re-generates the first K inputs adaptively for real (the config's model
and method) and checks the traces are the fixed run's prefixes, token for token.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from sys2distill.adaptive import StopRule
from sys2distill.filters.majority import MajorityFilter
from sys2distill.generation import load_traces

RULES = [(2, 0.8), (3, 0.9), (3, 0.95), (4, 0.95)]  # Beta rule: (min_samples, confidence)
PREDICTIVE = [(2, 0.9), (2, 0.95), (2, 0.98), (3, 0.98)]  # predictive rule: (min_samples, confidence)


def replay(traces: dict[str, list], rule: StopRule) -> dict[str, list]:
    """The prefix of each input's samples an adaptive run with ``rule`` would have drawn."""
    out = {}
    for ex_id, samples in traces.items():
        k = next(k for k in range(1, len(samples) + 1) if rule.done([t.answer for t in samples[:k]]))
        out[ex_id] = samples[:k]
    return out


def synthetic(alpha: float, n: int, inputs: int = 200) -> dict[str, list]:
    """Fixed-N samples of a simulated model: one token per sample, so tokens = samples."""
    import numpy as np

    from sys2distill.records import Trace

    rng = np.random.default_rng(0)
    out = {}
    for i in range(inputs):
        answers = rng.choice(["a", "b", "c", None], size=n, p=rng.dirichlet([alpha] * 4))
        out[f"s{i}"] = [Trace(f"s{i}", "synthetic", j, [], str(a), a, 1) for j, a in enumerate(answers)]
    return out


def kept(traces: dict[str, list], min_agreement: float, n: int) -> dict[str, str]:
    """Majority filter on each prefix; agreement is measured against the samples actually drawn."""
    f = MajorityFilter(min_agreement=min_agreement)
    decisions = (f.decide(samples) for samples in traces.values())
    return {d.example_id: d.answer for d in decisions if d.kept}


def verify(path: Path, config: str, k: int, rule: StopRule) -> str:
    from sys2distill.config import load_config
    from sys2distill.generation import run_method
    from sys2distill.pipeline import Pipeline

    p = Pipeline(load_config(config))
    method = path.stem
    fixed = load_traces(path)
    examples = [ex for ex in p.examples("train") if ex.id in fixed][:k]
    with tempfile.TemporaryDirectory() as tmp:
        got = run_method(p.method(method), examples, p.backend(), replace(p.sampling(), n=rule.max_samples),
                         Path(tmp) / "adaptive.jsonl", p.cfg.generation.chunk_sequences, desc="verify adaptive", stop=rule)
    expected = replay({ex.id: fixed[ex.id] for ex in examples}, rule)
    same = sum([t.final for t in got[ex.id]] == [t.final for t in expected[ex.id]] for ex in examples)
    return f"{same}/{len(examples)} inputs: adaptive traces equal the fixed run's first samples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", type=Path, nargs="?", help="a fixed-N generate/<method>.jsonl")
    ap.add_argument("--synthetic", type=float, default=None, metavar="ALPHA",
                    help="instead of a file: 200 inputs whose answer shares (a, b, c, unparsable) are drawn from "
                         "Dirichlet(ALPHA); small ALPHA = a model whose samples mostly agree")
    ap.add_argument("--min-agreement", type=float, default=0.5)
    ap.add_argument("--n", type=int, default=None, help="replay on the first N samples only (default: all)")
    ap.add_argument("--verify", type=int, default=0, help="re-generate this many inputs adaptively to check the replay")
    ap.add_argument("--config", default=None, help="the run's config (needed by --verify)")
    args = ap.parse_args()
    if (args.traces is None) == (args.synthetic is None):
        ap.error("give a generate file or --synthetic ALPHA (one of the two)")
    traces = synthetic(args.synthetic, args.n or 32) if args.synthetic is not None else load_traces(args.traces)
    n = min([len(v) for v in traces.values()] + ([args.n] if args.n else []))
    traces = {k: v[:n] for k, v in traces.items()}
    base_tokens = sum(t.tokens for v in traces.values() for t in v)
    base_kept = kept(traces, args.min_agreement, n)
    source = f"synthetic, Dirichlet({args.synthetic})" if args.synthetic is not None else args.traces
    print(f"{source}: {len(traces)} inputs × {n} samples, majority filter at min_agreement {args.min_agreement}\n")
    print("| rule | samples | generated tokens | tokens vs fixed | kept (yield) | kept answers identical to fixed N |")
    print("|---|---|---|---|---|---|")
    print(f"| fixed N = {n} | {len(traces) * n} | {base_tokens} | 1.00× | {len(base_kept)} ({len(base_kept) / len(traces):.0%}) | — |")
    rules = [(f"Beta, min {m}, confidence {c}", StopRule(n, m, c)) for m, c in RULES]
    rules.append((f"exact (filter-aware, t = {args.min_agreement})", StopRule(n, 1, rule="exact", threshold=args.min_agreement)))
    rules += [(f"predictive, min {m}, confidence {c}", StopRule(n, m, c, rule="predictive", threshold=args.min_agreement))
              for m, c in PREDICTIVE]
    for label, rule in rules:
        prefix = replay(traces, rule)
        tokens = sum(t.tokens for v in prefix.values() for t in v)
        got = kept(prefix, args.min_agreement, n)
        both = set(got) & set(base_kept)
        same = sum(got[k] == base_kept[k] for k in both)
        print(f"| {label} | {sum(map(len, prefix.values()))} | {tokens} | "
              f"{base_tokens / tokens:.2f}× fewer | {len(got)} ({len(got) / len(traces):.0%}) | "
              f"{same}/{len(base_kept)} of fixed N's kept answers ({same / len(base_kept):.0%})"
              f"{f'; {len(set(got) - set(base_kept))} kept only here' if set(got) - set(base_kept) else ''} |"
              if base_kept else f"| {label} | {sum(map(len, prefix.values()))} | "
              f"{tokens} | {base_tokens / tokens:.2f}× fewer | {len(got)} | fixed N kept none |")
    if args.verify:
        if not args.config:
            raise SystemExit("--verify needs --config (the run's config)")
        print("\n" + verify(args.traces, args.config, args.verify, StopRule(n, *RULES[2])))


if __name__ == "__main__":
    main()

"""Where does the distillation mechanism exist at this scale? (arXiv 2407.06023 Sec. 4, Tables 1–4)

For each model and each setting (the shipped experiments and simple variants), on a *dev* split
— labelled items drawn like the unlabeled train inputs (another seed), never a test item:

- greedy System 1 and every System 2 method: accuracy with a Wilson 95% interval, and the paired
  difference to System 1 on the same items (exact McNemar p, Newcombe interval of the difference);
- N = 16 sampled answers of System 1 and of the setting's System 2 methods: the majority filter's
  precision (kept answers that are right) and yield at min_agreement 0.5 / 0.75 and N = 8 / 16,
  set against greedy System 1 accuracy — the self-consistency effect that the paper's
  "Distill System 1" rows and every distilled model rest on (USC for free-form answers, the
  order-swap filter for the judge).

Traces are written as the pipeline writes them (resumable JSONL, one file per method) and scored
afterwards with the tasks' current answer rules, so a rule fix rescores without regenerating.

    python bench/demo_study.py generate --model embedded [--only coin_flip_p2,gsm8k] [--no-samples]
    python bench/demo_study.py generate --model qwen     # Qwen2.5-Coder-0.5B, benchmark-only (cot_gsm8k_qwen.py)
    python bench/demo_study.py analyze                   # bench/demo_study.md from every trace on disk
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "demo_study"
DEV_SEED = 7  # dev items: the train-side generator at another seed (the shipped configs use seed 0)
DEV_SIZE = 150
NOTE = " Flip means reverse."  # RaR's and zero-shot-CoT's coin-flip wording


@dataclass
class Setting:
    config: str  # the shipped config it varies
    overrides: list[str]
    greedy: list[str]  # methods scored greedily (the first is System 1)
    sampled: list[str] = field(default_factory=list)  # methods sampled N times for the filter's precision
    size: int = DEV_SIZE


def _letters(k: int) -> Setting:
    return Setting("rar_last_letter", [f"task.options.num_words={k}"], ["system1", "rar_1step", "rar_2step", "cot"],
                   ["system1", "rar_2step"])


def _coins(k: int) -> Setting:
    return Setting("rar_coin_flip", [f"task.options.num_people={k}"], ["system1", "rar_1step", "rar_2step", "cot"],
                   ["system1", "rar_2step"])


SETTINGS = {
    **{f"last_letter_w{k}": _letters(k) for k in (1, 2, 3, 4)},
    **{f"coin_flip_p{k}": _coins(k) for k in (1, 2, 3, 4)},
    "gsm8k": Setting("cot_gsm8k", [], ["system1", "cot", "cot_fewshot"], ["system1", "cot"]),
    # 38 questions × 4 templates; free-form answers, so its filter is the config's USC, not a vote
    "sycophancy": Setting("s2a_sycophancy", [], ["system1", "s2a"], ["system1", "s2a"], size=152),
    "bsm_judge": Setting("bsm_judge", ["task.options.eval_sets=[]"], ["system1", "cot", "bsm"], [], size=150),
}
SAMPLES = 16
MODELS = {"embedded": "SmolLM2-135M-Instruct (embedded)", "qwen": "Qwen2.5-Coder-0.5B-Instruct (benchmark-only)"}
HEADER = """# Where does the mechanism exist at this scale? (dev items only)

`python bench/demo_study.py generate --model embedded|qwen`, then `python bench/demo_study.py analyze`
(this file). Dev items: 150 per setting (152 for sycophancy: 38 questions × 4 templates), drawn like
the unlabeled train inputs at seed 7 with their labels; never a test item. bf16 on 2 CPU cores.
Greedy answers use the shipped config's `evaluate.max_tokens`; the filter's samples its `generation`
settings (temperature, top-p, max tokens per step), N = 16, of which the first 8 give the N = 8 rows.
Intervals: Wilson (accuracy), Newcombe paired (differences); McNemar exact p. "clear" = the
difference's 95% interval is above zero. The filter table's last column is what one fixed answer
would score on the kept items: on a yes/no task a precision near it (or near 50%) is no signal.
Free-form answers (sycophancy) cannot be voted on: their filter is the shipped config's USC over the
first 8 / 16 samples. The judge (bsm_judge: 150 HH-RLHF pairs, each shown in both orders, 300 items)
is filtered as the paper does, by order-swap consistency, here on greedy verdicts."""


def model_path(name: str) -> str:
    if name == "qwen":
        sys.path.insert(0, str(ROOT / "bench"))
        from cot_gsm8k_qwen import qwen_checkpoint

        return str(qwen_checkpoint())
    return name


def pipeline(model: str, name: str, setting: Setting, backend=None):
    from sys2distill.config import load_config
    from sys2distill.pipeline import Pipeline

    cfg = load_config(setting.config, [*setting.overrides, f"model={model}", f"task.seed={DEV_SEED}",
                                       f"task.train_size={setting.size}", "backend.dtype=bfloat16"])
    return Pipeline(cfg, backend=backend)


def dev_items(p):
    """The dev split: train-side items with their labels (the pipeline itself never reads train labels)."""
    p.task.reveal_train_labels = True
    items = p.task.load("train")
    if p.cfg.task.name == "coin_flip":  # RaR's test questions carry the note; ask ours the same way
        items = [replace(ex, question=ex.question + NOTE) if not ex.question.endswith(NOTE) else ex for ex in items]
    return items


def generate(model_name: str, only: list[str] | None, samples: bool, sampled: list[str] | None = None) -> None:
    from sys2distill.backends.base import SamplingParams
    from sys2distill.generation import run_method

    model = model_path(model_name)
    backend = None
    for name, setting in SETTINGS.items():
        if only and name not in only:
            continue
        p = pipeline(model, name, setting, backend)
        backend = p.backend()  # loaded once, shared by every setting
        items, folder = dev_items(p), OUT / model_name / name
        greedy = SamplingParams(n=1, temperature=0.0, max_tokens=p.cfg.evaluate.max_tokens)
        for method in setting.greedy:
            timed(folder, f"greedy_{method}", lambda m=method: run_method(
                p.method(m), items, backend, greedy, folder / f"greedy_{m}.jsonl", 256, desc=f"{name} {m} greedy"))
        for method in [m for m in setting.sampled if not sampled or m in sampled] if samples else []:
            params = replace(p.sampling(), n=SAMPLES)
            timed(folder, f"samples_{method}", lambda m=method: run_method(
                p.method(m), items, backend, params, folder / f"samples_{m}.jsonl", 256, desc=f"{name} {m} ×{SAMPLES}"))
            if p.cfg.filter.name == "usc":
                for n in (8, SAMPLES):
                    timed(folder, f"usc_{method}_{n}", lambda m=method, n=n: usc(p, items, folder, m, n))


def usc(p, items: list, folder: Path, method: str, n: int) -> None:
    """The config's USC filter (Sec. 4.2) over each item's first ``n`` samples, saved as its decisions."""
    from sys2distill.generation import load_traces
    from sys2distill.records import write_jsonl

    traces = {i: sorted(ts, key=lambda t: t.sample)[:n] for i, ts in load_traces(folder / f"samples_{method}.jsonl").items()}
    decisions = p.make_filter(p.cfg.distill.specs[0]).apply(items, traces, p.backend())
    write_jsonl(folder / f"usc_{method}_{n}.jsonl", decisions)


def timed(folder: Path, key: str, fn) -> None:
    """Run ``fn`` and record its wall time and the process's peak RSS beside the traces."""
    log = folder / "timings.json"
    times = json.loads(log.read_text()) if log.exists() else {}
    if key in times:
        return
    start = time.perf_counter()
    fn()
    folder.mkdir(parents=True, exist_ok=True)
    times[key] = {"seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    log.write_text(json.dumps(times, indent=1))


def _read(path: Path, task, items: dict) -> dict[str, list]:
    """Example id → the answers of its traces in sample order, read again with the task's current rule."""
    from sys2distill.records import Trace, read_records

    out: dict[str, list] = {}
    for t in sorted(read_records(path, Trace), key=lambda t: t.sample):
        if t.example_id in items:
            out.setdefault(t.example_id, []).append((task.extract_answer(t.final), t.tokens))
    return out


def analyze() -> None:
    """bench/demo_study.md: every table from the traces on disk, scored with the tasks' current rules."""
    from sys2distill.filters.majority import majority_vote
    from sys2distill.stats import paired_difference

    lines = [HEADER]
    for model in sorted(p.name for p in OUT.iterdir() if p.is_dir()):
        greedy_lines, filter_lines, judge_lines, time_lines = [], [], [], []
        for name, setting in SETTINGS.items():
            folder = OUT / model / name
            if not (folder / "greedy_system1.jsonl").exists():
                continue
            p = pipeline("embedded", name, setting)  # the task and its rule; no model is loaded
            items = {ex.id: ex for ex in dev_items(p)}
            task = p.task
            right = {}
            for method in setting.greedy:
                if not (folder / f"greedy_{method}.jsonl").exists():
                    continue
                got = _read(folder / f"greedy_{method}.jsonl", task, items)
                if len(got) < len(items):
                    continue
                ids = sorted(items)
                right[method] = [task.correct(got[i][0][0], items[i]) for i in ids]
                k, n = sum(right[method]), len(ids)
                tokens = sum(got[i][0][1] for i in ids) / n
                none = sum(got[i][0][0] is None for i in ids) / n
                if method == "system1" or "system1" not in right:
                    delta = ""
                else:
                    d = paired_difference(right[method], right["system1"])
                    mark = " **clear**" if d.diff > 0 and d.clear_of_zero else ""
                    delta = (f"{100 * d.diff:+.1f} ({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f}){mark} | "
                             f"{d.p_value:.2g}")
                greedy_lines.append(f"| {name} | {method} | {_ci(k, n)} | {delta or '— | —'} | {100 * none:.0f}% | {tokens:.0f} |")
                if task.name == "pairwise_judge":
                    verdicts = {i: got[i][0][0] for i in ids}
                    judge_lines.append(_judge_row(name, method, list(items.values()), verdicts, right[method], ids))
                    if method != "system1":
                        filter_lines.append(_order_swap_row(name, method, list(items.values()), verdicts, task,
                                                            dict(zip(ids, right["system1"]))))
            ids = sorted(items)
            s1 = dict(zip(ids, right.get("system1", [])))  # greedy System 1 right, by item
            for method in setting.sampled:
                path = folder / f"samples_{method}.jsonl"
                if not path.exists() or not s1:
                    continue
                if p.cfg.filter.name == "usc":
                    filter_lines += [_usc_row(name, method, n, folder / f"usc_{method}_{n}.jsonl", task, items, s1)
                                     for n in (8, SAMPLES) if (folder / f"usc_{method}_{n}.jsonl").exists()]
                    continue
                got = _read(path, task, items)
                if any(len(got.get(i, [])) < SAMPLES for i in items):
                    continue
                for n_samples in (8, 16):
                    for threshold in (0.5, 0.75):
                        kept = {}
                        for i in ids:
                            winner, _, share = majority_vote([a for a, _ in got[i][:n_samples]])
                            if winner is not None and share >= threshold:
                                kept[i] = task.correct(winner, items[i])
                        filter_lines.append(_filter_row(name, method, n_samples, threshold, kept, items, s1))
            if (folder / "timings.json").exists():
                t = json.loads((folder / "timings.json").read_text())
                time_lines.append(f"| {name} | {sum(v['seconds'] for v in t.values()) / 60:.1f} | "
                                  f"{max(v['peak_rss_gib'] for v in t.values())} |")
        lines += [f"\n## {MODELS.get(model, model)}\n", "### System 1 vs each System 2 method (greedy, dev items)\n",
                  "| setting | method | accuracy (95% CI) | Δ vs System 1, points (95% CI) | McNemar p | no answer | mean tokens |",
                  "|---|---|---|---|---|---|---|", *greedy_lines]
        if judge_lines:
            lines += ["\n### Judges: agreement with the human label and order-swap consistency (greedy, dev pairs)\n",
                      "| setting | method | human agreement over both orders (95% CI) | pairs whose verdict flips on swap (95% CI) |",
                      "|---|---|---|---|", *judge_lines]
        if filter_lines:
            lines += ["\n### Filters: precision of kept answers vs greedy System 1 on the same items\n",
                      "| setting | sampled method | N | min_agreement / rule | kept | kept answers right (95% CI) "
                      "| greedy System 1 right on those items | Δ, points (95% CI) | commonest gold answer on those items |",
                      "|---|---|---|---|---|---|---|---|---|", *filter_lines]
        lines += ["\n### Wall time and peak memory of the generation\n", "| setting | minutes | peak RSS (GiB) |",
                  "|---|---|---|", *time_lines]
    (ROOT / "bench" / "demo_study.md").write_text("\n".join(lines) + "\n")
    print(ROOT / "bench" / "demo_study.md")


def _ci(k: int, n: int) -> str:
    from sys2distill.stats import accuracy_interval

    lo, hi = accuracy_interval(k, n)
    return f"{100 * k / n:.1f}% ({100 * lo:.0f}–{100 * hi:.0f})"


def _judge_row(name: str, method: str, examples: list, verdicts: dict, right: list[bool], ids: list[str]) -> str:
    """The paper's two judge columns (Table 3): human agreement and % inconsistent under the swap."""
    from sys2distill.tasks.pairwise_judge import inconsistent_pairs

    flips = inconsistent_pairs(examples, verdicts)
    return (f"| {name} | {method} | {_ci(sum(right), len(ids))} | "
            f"{_ci(sum(flips.values()), len(flips))} of {len(flips)} |")


def _usc_row(name: str, method: str, n: int, path: Path, task, items: dict, s1_right: dict) -> str:
    """USC's kept answers (it composes one per input; a fallback vote may drop some) against greedy System 1."""
    from sys2distill.records import FilterDecision, read_records

    kept = {d.example_id: task.correct(d.answer, items[d.example_id])
            for d in read_records(path, FilterDecision) if d.kept and d.example_id in items}
    return _filter_row(name, method, n, "USC", kept, items, s1_right, free_form=True)


def _order_swap_row(name: str, method: str, examples: list, verdicts: dict, task, s1_right: dict) -> str:
    """The judge's filter (Sec. 4.3) on greedy verdicts: keep both orders of a pair when they name the
    same response (ties dropped, as the shipped filter does), against greedy System 1 on those items."""
    from sys2distill.tasks.pairwise_judge import preferred, swapped_partners

    by_id, kept = {ex.id: ex for ex in examples}, {}
    for i, partner in swapped_partners(examples).items():
        pick = preferred(by_id[i].metadata["order"], verdicts[i])
        if partner and pick not in (None, "tie") and pick == preferred(partner.metadata["order"], verdicts[partner.id]):
            kept[i] = task.correct(verdicts[i], by_id[i])
    return _filter_row(name, f"{method} (greedy, both orders)", 1, "order swap", kept, by_id, s1_right)


def _filter_row(name: str, method: str, n: int, rule, kept: dict[str, bool], items: dict, s1_right: dict,
                free_form: bool = False) -> str:
    """One row of the filter table: how many items ``rule`` kept, how many of those it got right, and
    greedy System 1 on the same items (paired difference); last, what the commonest gold answer of
    the kept items would score — a yes/no filter at that share is a constant, not a signal."""
    from collections import Counter

    from sys2distill.stats import paired_difference
    from sys2distill.tasks.base import normalize

    if not kept:
        return f"| {name} | {method} | {n} | {rule} | 0/{len(items)} | — | — | — | — |"
    d = paired_difference([kept[i] for i in kept], [s1_right[i] for i in kept])
    mark = " **clear**" if d.diff > 0 and d.clear_of_zero else ""
    if free_form:
        constant = "free-form"
    else:
        gold, count = Counter(normalize(items[i].answer) for i in kept).most_common(1)[0]
        constant = f"“{gold}” {100 * count / len(kept):.0f}%"
    return (f"| {name} | {method} | {n} | {rule} | {len(kept)}/{len(items)} | {_ci(sum(kept.values()), len(kept))} "
            f"| {_ci(sum(s1_right[i] for i in kept), len(kept))} | {100 * d.diff:+.1f} "
            f"({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f}){mark} | {constant} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["generate", "analyze"])
    ap.add_argument("--model", default="embedded", help="embedded or qwen")
    ap.add_argument("--only", help="comma-separated settings: " + ", ".join(SETTINGS))
    ap.add_argument("--no-samples", action="store_true", help="greedy only (no filter precision)")
    ap.add_argument("--sampled", help="comma-separated subset of the sampled methods, e.g. cot")
    args = ap.parse_args()
    if args.command == "generate":
        generate(args.model, args.only.split(",") if args.only else None, not args.no_samples,
                 args.sampled.split(",") if args.sampled else None)
    else:
        analyze()


if __name__ == "__main__":
    main()

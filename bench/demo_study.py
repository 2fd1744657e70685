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

The positive-control families (``lookup``, ``arithmetic``: program-written tasks where few-shot CoT
may help a small model) add, per family and difficulty, on the same kind of dev items:

- the gold-label ceiling: the shipped SFT settings on the config's train inputs with their *gold*
  answers, scored greedy on the dev items (can the direct answer be learnt at all from that many?);
- the whole pipeline, unchanged and label-free, with the dev items as its test split
  (``task.options.path``, which the train inputs then avoid), Distill System 1, and both controls
  (``distill.controls: [shuffled, gold]``).

    python bench/demo_study.py generate --model embedded [--only coin_flip_p2,gsm8k] [--no-samples]
    python bench/demo_study.py generate --model qwen     # Qwen2.5-Coder-0.5B, benchmark-only (cot_gsm8k_qwen.py)
    python bench/demo_study.py ceiling --model embedded --only lookup_f4     # families only
    python bench/demo_study.py distil --model embedded --only lookup_f4      # families only
    python bench/demo_study.py analyze   # bench/demo_study.md and bench/positive_control.md from every trace on disk
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
# The positive-control families: System 1 zero-shot and few-shot (the CoT exemplars' answers alone), CoT
# zero-shot and few-shot; sampled: the two few-shot prompts (Distill System 1's and Distilled CoT's).
_FAMILY_GREEDY, _FAMILY_SAMPLED = ["system1", "direct_fewshot", "cot", "cot_fewshot"], ["direct_fewshot", "cot_fewshot"]
FAMILIES = {
    **{f"lookup_f{k}": Setting("cot_lookup", [f"task.options.num_facts={k}"], _FAMILY_GREEDY, _FAMILY_SAMPLED)
       for k in (3, 4, 6)},
    **{f"arithmetic_t{k}": Setting("cot_arithmetic", [f"task.options.num_terms={k}"], _FAMILY_GREEDY, _FAMILY_SAMPLED)
       for k in (3, 4)},
}
SETTINGS.update(FAMILIES)
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


FAMILY_HEADER = """# A positive control: where does System 2 help a small model, and does distillation recover it? (dev items only)

`python bench/demo_study.py generate|ceiling|distil --model embedded|qwen --only SETTING`, then
`python bench/demo_study.py analyze` (this file). The settings are the program-written families of
`configs/cot_lookup.yaml` (fact lookup among distractors, difficulty = facts per item) and
`configs/cot_arithmetic.yaml` (chained addition of 1–9, difficulty = terms). Dev items: 150 per setting,
train-part inputs at seed 7 with their labels, never a test item (no test-part input can be drawn on the
train side: `tasks/numeric.py`). bf16 on 2 CPU cores. System 1 few-shot (`direct_fewshot`) shows the CoT
prompt's four exemplars with their answers only, as chat turns, so CoT few-shot differs from it in the
reasoning alone. Intervals: Wilson (accuracy), Newcombe paired (differences); McNemar exact p.

Gold-label ceiling: the shipped SFT settings (full, lr 1e-4, 3 epochs, batch 8) on the config's 120 train
inputs with their *gold* answers, scored greedy on the dev items: how well the direct answer can be learnt
from that many examples at all. The pipeline: the shipped config unchanged and label-free (8 samples,
majority ≥ 0.5, answer-only targets), with the dev items as its test split (`task.options.path`, which the
train inputs then avoid), Distill System 1 (few-shot System 1's voted answers) and the two controls of
`distill.controls` (the same SFT on the same kept inputs with the kept answers shuffled across inputs, and
with their gold answers). A setting **distils** when the distilled model is clear of the best System 1 and of
Distill System 1 (paired 95% intervals above zero), recovers ≥ 50% of System 2's gain, its commonest answer's
share is within 10 points of the commonest gold answer's, and it answers in no more tokens than System 1."""


def model_path(name: str) -> str:
    if name == "qwen":
        sys.path.insert(0, str(ROOT / "bench"))
        from cot_gsm8k_qwen import qwen_checkpoint

        return str(qwen_checkpoint())
    return name


def pipeline(model: str, name: str, setting: Setting, backend=None):
    from sys2distill.config import load_config
    from sys2distill.pipeline import Pipeline

    # run_dir: the backend records what it loaded there (backend.json), in the study's folder, not runs/<config>
    cfg = load_config(setting.config, [*setting.overrides, f"model={model}", f"task.seed={DEV_SEED}",
                                       f"task.train_size={setting.size}", "backend.dtype=bfloat16",
                                       f"run_dir={OUT / 'backend' / name}"])
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
    """bench/demo_study.md (the paper's tasks) and bench/positive_control.md (the families): every table from
    the traces on disk, scored with the tasks' current rules. A file whose settings have no traces is left as it is."""
    paper = {k: v for k, v in SETTINGS.items() if k not in FAMILIES}
    for settings, out, header, extra in ((paper, "demo_study.md", HEADER, None),
                                         (FAMILIES, "positive_control.md", FAMILY_HEADER, _family_tables)):
        lines = []
        for model in sorted(p.name for p in OUT.iterdir() if p.is_dir()) if OUT.is_dir() else []:
            tables = _model_tables(model, settings)
            if not tables:
                continue
            lines += [f"\n## {MODELS.get(model, model)}\n", *tables, *(extra(model) if extra else [])]
        if lines:
            (ROOT / "bench" / out).write_text("\n".join([header, *lines]) + "\n")
            print(ROOT / "bench" / out)


def _model_tables(model: str, settings: dict[str, Setting]) -> list[str]:
    """One model's greedy, judge, filter and timing tables over ``settings`` (nothing if it has no traces)."""
    greedy_lines, filter_lines, judge_lines, time_lines = [], [], [], []
    for name, setting in settings.items():
        folder = OUT / model / name
        if not (folder / "greedy_system1.jsonl").exists():
            continue
        p = pipeline("embedded", name, setting)  # the task and its rule; no model is loaded
        items = {ex.id: ex for ex in dev_items(p)}
        right = _greedy_rows(name, setting, folder, p.task, items, greedy_lines, judge_lines, filter_lines)
        filter_lines += _sample_rows(name, setting, folder, p, items, dict(zip(sorted(items), right.get("system1", []))))
        if (folder / "timings.json").exists():
            t = json.loads((folder / "timings.json").read_text())
            time_lines.append(f"| {name} | {sum(v['seconds'] for v in t.values()) / 60:.1f} | "
                              f"{max(v['peak_rss_gib'] for v in t.values())} |")
    if not greedy_lines:
        return []
    lines = ["### System 1 vs each System 2 method (greedy, dev items)\n",
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
    return lines + ["\n### Wall time and peak memory (generation; the families: ceiling and pipeline too)\n",
                    "| setting | minutes | peak RSS (GiB) |", "|---|---|---|", *time_lines]


def _greedy_rows(name: str, setting: Setting, folder: Path, task, items: dict, greedy_lines: list, judge_lines: list,
                 filter_lines: list) -> dict[str, list[bool]]:
    """The greedy table's rows of one setting (and a judge's rows); returns each method's per-item correctness."""
    from sys2distill.stats import paired_difference

    right, ids = {}, sorted(items)
    for method in setting.greedy:
        if not (folder / f"greedy_{method}.jsonl").exists():
            continue
        got = _read(folder / f"greedy_{method}.jsonl", task, items)
        if len(got) < len(items):
            continue
        right[method] = [task.correct(got[i][0][0], items[i]) for i in ids]
        k, n = sum(right[method]), len(ids)
        tokens = sum(got[i][0][1] for i in ids) / n
        none = sum(got[i][0][0] is None for i in ids) / n
        if method == "system1" or "system1" not in right:
            delta = ""
        else:
            d = paired_difference(right[method], right["system1"])
            mark = " **clear**" if d.diff > 0 and d.clear_of_zero else ""
            delta = f"{100 * d.diff:+.1f} ({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f}){mark} | {d.p_value:.2g}"
        greedy_lines.append(f"| {name} | {method} | {_ci(k, n)} | {delta or '— | —'} | {100 * none:.0f}% | {tokens:.0f} |")
        if task.name == "pairwise_judge":
            verdicts = {i: got[i][0][0] for i in ids}
            judge_lines.append(_judge_row(name, method, list(items.values()), verdicts, right[method], ids))
            if method != "system1":
                filter_lines.append(_order_swap_row(name, method, list(items.values()), verdicts, task,
                                                    dict(zip(ids, right["system1"]))))
    return right


def _sample_rows(name: str, setting: Setting, folder: Path, p, items: dict, s1: dict) -> list[str]:
    """The filter table's rows of one setting: majority vote at N = 8/16 × 0.5/0.75, or USC's decisions."""
    from sys2distill.filters.majority import majority_vote

    rows = []
    for method in setting.sampled:
        path = folder / f"samples_{method}.jsonl"
        if not path.exists() or not s1:
            continue
        if p.cfg.filter.name == "usc":
            rows += [_usc_row(name, method, n, folder / f"usc_{method}_{n}.jsonl", p.task, items, s1)
                     for n in (8, SAMPLES) if (folder / f"usc_{method}_{n}.jsonl").exists()]
            continue
        got = _read(path, p.task, items)
        if any(len(got.get(i, [])) < SAMPLES for i in items):
            continue
        for n_samples in (8, 16):
            for threshold in (0.5, 0.75):
                kept = {}
                for i in sorted(items):
                    winner, _, share = majority_vote([a for a, _ in got[i][:n_samples]])
                    if winner is not None and share >= threshold:
                        kept[i] = p.task.correct(winner, items[i])
                rows.append(_filter_row(name, method, n_samples, threshold, kept, items, s1))
    return rows


def _family_tables(model: str) -> list[str]:
    """The families' ceiling and pipeline tables for one model."""
    ceiling_lines, pipeline_lines = [], []
    for name, setting in FAMILIES.items():
        folder = OUT / model / name
        if not (folder / "greedy_system1.jsonl").exists():
            continue
        p = pipeline("embedded", name, setting)
        items = {ex.id: ex for ex in dev_items(p)}
        ceiling_lines.append(_ceiling_row(name, setting, folder, p.task, items))
        if (folder / "pipeline" / "results.json").exists():
            pipeline_lines.append(_pipeline_row(name, folder / "pipeline"))
    lines = ["\n### Does System 2 help, and can the direct answer be learnt? (greedy, dev items)\n",
             "| setting | System 1 zero-shot | System 1 few-shot | CoT zero-shot | CoT few-shot | CoT few-shot − System 1 "
             "few-shot, points (95% CI) | gold-label ceiling (the config's SFT on its train inputs, gold answers) |",
             "|---|---|---|---|---|---|---|", *ceiling_lines]
    if pipeline_lines:
        lines += ["\n### The whole pipeline, label-free, scored on the dev items (with Distill System 1 and both controls)\n",
                  "| setting | CoT kept / right | System 1 (best) | CoT few-shot | Distill System 1 | Distilled CoT | shuffled "
                  "control | gold control | gap recovered (95% CI) | Distilled − best System 1 | Distilled − Distill System 1 "
                  "| commonest answer: distilled / gold | #tokens: distilled / System 1 / CoT | distils? |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *pipeline_lines]
    return lines


def _ceiling_row(name: str, setting: Setting, folder: Path, task, items: dict) -> str:
    ids = sorted(items)
    cells, right = [], {}
    for method in setting.greedy:
        path = folder / f"greedy_{method}.jsonl"
        got = _read(path, task, items) if path.exists() else {}
        right[method] = [task.correct(got[i][0][0], items[i]) for i in ids] if len(got) == len(ids) else None
        cells.append(_ci(sum(right[method]), len(ids)) if right[method] else "—")
    delta = "—"
    if right.get("cot_fewshot") and right.get("direct_fewshot"):
        from sys2distill.stats import paired_difference

        d = paired_difference(right["cot_fewshot"], right["direct_fewshot"])
        delta = f"{100 * d.diff:+.1f} ({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f}){' **clear**' if d.diff > 0 and d.clear_of_zero else ''}"
    path = folder / "ceiling" / "greedy.jsonl"
    gold = _read(path, task, items) if path.exists() else {}
    ceiling = _ci(sum(task.correct(gold[i][0][0], items[i]) for i in ids), len(ids)) if len(gold) == len(ids) else "—"
    return f"| {name} | {' | '.join(cells)} | {delta} | {ceiling} |"


def _pipeline_row(name: str, run: Path) -> str:
    """One setting's pipeline result, and whether it distils by the criteria of the header."""
    from sys2distill.report import Results

    r = Results.load(run)
    v = next(v for v in r.verdicts if v.system2 == r.score("cot_fewshot").label)
    by_kind = lambda kind, **kw: next((s for s in r.scores if s.kind == kind and all(getattr(s, k) == x for k, x in kw.items())), None)  # noqa: E731
    distilled, system2 = r.score("distill_cot_fewshot"), r.score("cot_fewshot")
    best = next(s for s in r.scores if s.label == v.system1)
    d_s1 = r.score("distill_direct_fewshot")
    against = {c.baseline: c for c in v.against}
    vs_d_s1 = against.get(d_s1.label) if d_s1 else None
    cell = lambda s: f"{100 * s.accuracy:.1f}%" if s else "—"  # noqa: E731
    diff = lambda c: f"{100 * c.diff:+.1f} ({100 * c.diff_ci[0]:+.1f} to {100 * c.diff_ci[1]:+.1f})" if c else "—"  # noqa: E731
    f = r.filter["cot_fewshot"]
    gold_share = r.constant_baseline[1] if r.constant_baseline else 0.0
    top = distilled.top_answer[1] if distilled.top_answer else 0.0
    distils = (v.distilled_gain.diff_ci[0] > 0 and vs_d_s1 is not None and vs_d_s1.diff_ci[0] > 0
               and (v.recovered or 0) >= 0.5 and top <= gold_share + 0.10 and distilled.mean_tokens <= best.mean_tokens)
    recovered = (f"{100 * v.recovered:.0f}% ({100 * v.recovered_ci[0]:.0f}–{100 * v.recovered_ci[1]:.0f})"
                 if v.recovered is not None and v.recovered_ci else "— (gap not clear)")
    return (f"| {name} | {f.kept}/{f.inputs}, {100 * (f.precision or 0):.0f}% | {best.label} {cell(best)} | {cell(system2)} "
            f"| {cell(d_s1)} | **{cell(distilled)}** | {cell(by_kind('control', control='shuffled'))} "
            f"| {cell(by_kind('control', control='gold'))} | {recovered} | {diff(v.distilled_gain)} | {diff(vs_d_s1)} "
            f"| {100 * top:.0f}% / {100 * gold_share:.0f}% | {distilled.mean_tokens:.1f} / {best.mean_tokens:.1f} / "
            f"{system2.mean_tokens:.1f} | {'**yes**' if distils else 'no'} |")


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


# -- the positive-control families: gold-label ceiling and the whole pipeline on dev items -------------

def dev_file(model_name: str, name: str) -> Path:
    """The setting's dev items as a task file (``task.options.path``): the test split of the runs below,
    which the train inputs then avoid."""
    from sys2distill.records import write_jsonl

    path = OUT / model_name / name / "dev.jsonl"
    if not path.exists():
        p = pipeline("embedded", name, FAMILIES[name])
        write_jsonl(path, [{"question": ex.question, "answer": ex.answer} for ex in dev_items(p)])
    return path


def family_config(model_name: str, name: str, *extra: str):
    """The setting's shipped config at the sizes it ships with, its dev items as the test split."""
    from sys2distill.config import load_config

    setting = FAMILIES[name]
    folder = OUT / model_name / name
    return load_config(setting.config, [*setting.overrides, f"model={model_path(model_name)}", "backend.dtype=bfloat16",
                                        f"task.options.path={dev_file(model_name, name)}", f"task.test_size={setting.size}",
                                        f"name={name}", f"run_dir={folder / 'pipeline'}", *extra])


def ceiling(model_name: str, name: str) -> None:
    """The gold-label ceiling: the config's SFT on its train inputs with their gold answers, greedy on dev items."""
    from sys2distill.backends.base import SamplingParams
    from sys2distill.backends.build import build_backend
    from sys2distill.generation import run_method
    from sys2distill.pipeline import Pipeline
    from sys2distill.records import DistillRecord, write_jsonl
    from sys2distill.trainer import DONE, train

    cfg = family_config(model_name, name)
    p, folder = Pipeline(cfg), OUT / model_name / name / "ceiling"
    p.task.reveal_train_labels = True
    system1 = p.method("system1")
    records = [DistillRecord(id=ex.id, prompt=system1.prompt("answer", ex), metadata={"gold": True},
                             completion=[{"role": "assistant", "content": p.task.format_answer(ex.answer)}])
               for ex in p.task.load("train")]
    write_jsonl(folder / "gold.jsonl", records)
    if not (folder / "model" / DONE).exists():
        timed(folder.parent, "ceiling_train", lambda: train(folder / "gold.jsonl", cfg.model, folder / "model", cfg.train))
    model = build_backend(cfg.backend, str(folder / "model"), folder, checkpoint=True)
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=cfg.evaluate.max_tokens)
    dev = dev_items(pipeline("embedded", name, FAMILIES[name]))  # ids as the other dev tables read them
    timed(folder.parent, "ceiling_greedy", lambda: run_method(system1, dev, model, greedy, folder / "greedy.jsonl", 256,
                                                              desc=f"{name} ceiling"))


def distil(model_name: str, name: str) -> None:
    """The whole pipeline on the setting, Distill System 1 and both controls included; dev items as its test split."""
    from sys2distill.pipeline import Pipeline

    cfg = family_config(model_name, name, "distill.controls=[shuffled,gold]")
    timed(OUT / model_name / name, "pipeline", lambda: Pipeline(cfg).run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["generate", "ceiling", "distil", "analyze"])
    ap.add_argument("--model", default="embedded", help="embedded or qwen")
    ap.add_argument("--only", help="comma-separated settings: " + ", ".join(SETTINGS))
    ap.add_argument("--no-samples", action="store_true", help="greedy only (no filter precision)")
    ap.add_argument("--sampled", help="comma-separated subset of the sampled methods, e.g. cot")
    args = ap.parse_args()
    if args.command == "generate":
        generate(args.model, args.only.split(",") if args.only else None, not args.no_samples,
                 args.sampled.split(",") if args.sampled else None)
    elif args.command in ("ceiling", "distil"):
        for name in args.only.split(",") if args.only else FAMILIES:
            if name not in FAMILIES:
                sys.exit(f"{args.command} runs the positive-control families only: {', '.join(FAMILIES)}")
            (ceiling if args.command == "ceiling" else distil)(args.model, name)
    else:
        analyze()


if __name__ == "__main__":
    main()

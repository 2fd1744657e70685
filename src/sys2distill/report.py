"""The report: a pure function from a run's per-item rows and records to a typed ``Results``.

``build_results`` reads nothing but its arguments — the evaluation rows (``evaluator.EvalRow``),
the filter's decisions and its precision check, the train records and stage timings — so every
number in ``results.json`` / ``results.md`` can be recomputed from ``evaluate/rows.jsonl`` by hand.
Beside the paper-style table (accuracy with Wilson intervals, #tokens: arXiv 2407.06023 Tables
1–4) it reports paired comparisons with System 1, the distillability verdict, the filter's yield
and precision, and what is needed to trust the numbers: model identity, extraction rule, versions,
wall time and peak memory per stage.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from sys2distill import rundir
from sys2distill.evaluator import EvalRow, FilterCheck
from sys2distill.paper import PAPER, PAPER_K
from sys2distill.plot import plot_accuracy_vs_tokens
from sys2distill.records import FilterDecision
from sys2distill.stats import accuracy_interval, paired_difference
from sys2distill.tasks.base import normalize
from sys2distill.verdict import Comparison, Verdict, verdict

RESULTS_JSON, RESULTS_MD = rundir.RESULTS_JSON, rundir.RESULTS_MD


class KVote(BaseModel):
    k: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_tokens: float  # every one of the k samples counted
    ties: float  # share of items whose vote was a tie (broken towards the answer sampled first)


class SystemScore(BaseModel):
    system: str  # run-folder key, e.g. "rar_2step" or "distill_rar_2step"
    label: str  # table name, e.g. "Distilled RaR 2-step"
    kind: str  # "system1", "system2", "distilled" or "control"
    source: str | None = None  # distilled: the System 2 method it was distilled from
    control: str | None = None  # a control model (distill.controls): "shuffled" or "gold"
    n: int
    correct: int
    accuracy: float
    accuracy_ci: tuple[float, float]  # 95% Wilson
    mean_tokens: float
    extraction_failures: float  # share of answers the task's rule could not read
    fidelity: float | None = None  # distilled: agreement with System 2's majority answer (inputs that have one)
    by_group: dict[str, float] | None = None
    inconsistent: float | None = None  # judges: share of pairs whose verdict flips when the responses swap
    inconsistent_by_group: dict[str, float] | None = None
    by_k: list[KVote] | None = None
    # The answer histogram's head: the commonest extracted answer (normalised) and its share of the items
    # (None: no answer was read), and how many distinct answers the system gave
    top_answer: tuple[str, float] | None = None
    distinct_answers: int = 0


class FilterSummary(BaseModel):
    inputs: int
    kept: int
    kept_share: float
    dropped_because: dict[str, int]
    precision: float | None = None  # kept answers that are right, by the train labels (no distilled model trains on them)
    precision_ci: tuple[float, float] | None = None
    train: dict[str, Any] | None = None  # train/<entry>/DONE.json
    not_trained: str | None = None


class RoutePoint(BaseModel):
    threshold: float | None  # None: above every confidence (all inputs to System 2)
    fallback_share: float
    accuracy: float
    mean_tokens: float


class RouteSummary(BaseModel):
    """The router (``route``) on the test items, and how its threshold was chosen on held-out train inputs."""

    label: str
    distilled: str  # the distilled model's label
    system2: str  # the System 2 method's label
    confidence: str  # route.confidence
    holdout: int  # held-out unlabeled inputs the threshold was chosen on
    with_reference: int  # ... of which System 2's samples had a majority answer
    threshold: float | None
    rule: str
    holdout_agreement: float | None  # routed answers = System 2's majority answer, held-out inputs
    system2_agreement: float | None  # System 2's greedy answer = its majority answer, held-out inputs
    fallback_share: float  # test items sent to System 2
    accuracy: float
    mean_tokens: float
    system2_mean_tokens: float
    distilled_accuracy: float = 0.0
    distilled_mean_tokens: float = 0.0
    against_system2: Comparison  # paired, on the test items
    curve: list[RoutePoint]  # every threshold, all-distilled to all-System 2


class Results(BaseModel):
    task: str
    model: str
    metric: str = "accuracy"
    extraction_rule: str
    task_version: int
    config: dict[str, Any]
    scores: list[SystemScore]
    comparisons: list[Comparison]  # every system against System 1, paired on the test items
    verdicts: list[Verdict]
    filter: dict[str, FilterSummary]
    stages: dict[str, dict[str, Any]]
    versions: dict[str, str]
    plot: str | None = None
    # The commonest gold answer and its share of the test items: what always giving one answer would
    # score. A small model's System 2 "gain" can be a gain in answering at all; this says where chance is.
    constant_baseline: tuple[str, float] | None = None
    gold_answers: int | None = None  # distinct gold answers on the test items
    routes: list[RouteSummary] = []  # the router (config ``route``), when the run has one

    @classmethod
    def load(cls, run_dir: Path) -> Results:
        return cls.model_validate_json((Path(run_dir) / RESULTS_JSON).read_text(encoding="utf-8"))

    def score(self, system: str) -> SystemScore | None:
        return next((s for s in self.scores if s.system == system), None)

    def from_system1(self, score: SystemScore) -> bool:
        """Whether a distilled model is a "Distill System 1" baseline: distilled from a System 1 prompt."""
        source = self.score(score.source) if score.source else None
        return score.source == "system1" or (source is not None and source.kind == "system1")

    def headline(self) -> Verdict | None:
        """The verdict a summary leads with: the first distilled model with a System 2 to compare."""
        return self.verdicts[0] if self.verdicts else None


# -- building -----------------------------------------------------------------------------------

def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def system_score(rows: list[EvalRow]) -> SystemScore:
    """One system's row of the table, from its rows."""
    first, n = rows[0], len(rows)
    correct = sum(r.correct for r in rows)
    groups: dict[str, list[EvalRow]] = defaultdict(list)
    for r in rows:
        for g in r.groups:
            groups[g].append(r)
    pairs = {r.pair_id: r.pair_inconsistent for r in rows if r.pair_inconsistent is not None}

    def flips(rs: list[EvalRow]) -> float | None:
        ps = {r.pair_id: r.pair_inconsistent for r in rs if r.pair_inconsistent is not None}
        return _mean(ps.values()) if ps else None

    fid = [r.agrees_with_system2 for r in rows if r.agrees_with_system2 is not None]
    answers = Counter(normalize(r.answer) for r in rows if r.answer is not None)
    by_k = None
    if first.votes:
        by_k = []
        for i, k in enumerate(v["k"] for v in first.votes):
            hits = sum(r.votes[i]["correct"] for r in rows)
            by_k.append(KVote(k=k, accuracy=hits / n, accuracy_ci=accuracy_interval(hits, n),
                              mean_tokens=_mean(r.votes[i]["tokens"] for r in rows),
                              ties=_mean(r.votes[i]["tied"] for r in rows)))
    return SystemScore(
        system=first.system, label=first.label, kind=first.kind, source=first.source, n=n, correct=correct,
        accuracy=correct / n, accuracy_ci=accuracy_interval(correct, n), mean_tokens=_mean(r.tokens for r in rows),
        extraction_failures=_mean(r.answer is None for r in rows), fidelity=_mean(fid) if fid else None,
        by_group={g: _mean(r.correct for r in rs) for g, rs in sorted(groups.items())} or None,
        inconsistent=_mean(pairs.values()) if pairs else None,
        inconsistent_by_group={g: f for g, rs in sorted(groups.items()) if (f := flips(rs)) is not None} or None,
        by_k=by_k, control=first.control, distinct_answers=len(answers),
        top_answer=(answers.most_common(1)[0][0], answers.most_common(1)[0][1] / n) if answers else None)


def _filter_summary(decisions: list[FilterDecision], checks: list[FilterCheck] | None, trained: dict) -> FilterSummary:
    kept = [d for d in decisions if d.kept]
    right = sum(c.correct for c in checks) if checks else 0
    return FilterSummary(
        inputs=len(decisions), kept=len(kept), kept_share=len(kept) / len(decisions) if decisions else 0.0,
        dropped_because=dict(Counter(d.reason.split(" ")[0] if "agreement" in d.reason else d.reason
                                     for d in decisions if not d.kept)),
        precision=right / len(checks) if checks else None,
        precision_ci=accuracy_interval(right, len(checks)) if checks else None,
        train=trained.get("done"), not_trained=trained.get("not_trained"))


def build_results(rows: list[EvalRow], *, decisions: dict[str, list[FilterDecision]], checks: list[FilterCheck] | None,
                  trained: dict[str, dict], stages: dict[str, dict], info: dict[str, Any],
                  routes: list[dict] = ()) -> Results:
    """Everything in ``results.json``, from the run's records alone.

    ``decisions`` and ``trained`` are keyed by distill entry (``trained[entry]`` holds ``done`` —
    the DONE.json record — or ``not_trained``); ``checks`` is ``evaluate/filter_check.jsonl`` (None:
    the task cannot rebuild its train labels); ``info`` carries task, model, metric, extraction_rule,
    task_version, config and versions; ``routes`` are the router's ``evaluate/route_<entry>.json``.
    """
    by_system: dict[str, list[EvalRow]] = {}
    for r in rows:
        by_system.setdefault(r.system, []).append(r)
    scores = [system_score(rs) for rs in by_system.values()]
    baseline = system1_baseline(scores)
    ids = [r.id for r in by_system[baseline.system]] if baseline else []
    correct = {s: {r.id: r.correct for r in rs} for s, rs in by_system.items()}
    tokens = {s: {r.id: float(r.tokens) for r in rs} for s, rs in by_system.items()}
    answers = {s: {r.id: normalize(r.answer) if r.answer is not None else None for r in rs} for s, rs in by_system.items()}
    golds = [normalize(r.gold) if r.gold else None for r in by_system[baseline.system]] if baseline else []  # ``ids`` order
    kind = {s.system: s.kind for s in scores}
    comparisons, verdicts = [], []
    complete = lambda system: set(ids) <= correct[system].keys()  # noqa: E731 -- scored on every baseline item
    col = lambda table, system: [table[system][i] for i in ids]  # noqa: E731
    if baseline:
        for s in scores:
            if s.system != baseline.system and complete(s.system):
                d = paired_difference(col(correct, s.system), col(correct, baseline.system))
                comparisons.append(Comparison.of(s.label, baseline.label, d))
    for s in scores:
        if s.kind != "distilled" or s.source not in correct or kind[s.source] == "system1" or not ids:
            continue
        # Every other baseline on the same items: System 1 prompts, Distill System 1 models, this entry's controls.
        others = [o for o in scores if o.system != baseline.system and complete(o.system) and (
            o.kind == "system1" or (o.kind == "distilled" and (kind.get(o.source) == "system1" or o.source == "system1"))
            or (o.kind == "control" and o.system == f"control_{o.control}_{s.system.removeprefix('distill_')}"))]
        gold = next((o.label for o in others if o.control == "gold"), None)
        verdicts.append(verdict(col(correct, baseline.system), col(correct, s.source), col(correct, s.system),
                                col(tokens, s.source), col(tokens, s.system),
                                labels=(s.label, next(o.label for o in scores if o.system == s.source), baseline.label),
                                d_answers=col(answers, s.system), golds=golds,
                                others={o.label: col(correct, o.system) for o in others}, ceiling=gold))
    by_entry: dict[str, list[FilterCheck]] = defaultdict(list)
    for c in checks or []:
        by_entry[c.entry].append(c)
    summaries = {entry: _filter_summary(ds, by_entry.get(entry) if checks is not None else None, trained.get(entry, {}))
                 for entry, ds in decisions.items()}
    gold_counts = Counter(g for g in golds if g)
    constant = None
    if gold_counts:
        answer, count = gold_counts.most_common(1)[0]
        constant = (answer, count / len(golds))
    return Results(scores=scores, comparisons=comparisons, verdicts=verdicts, filter=summaries, stages=stages,
                   constant_baseline=constant, gold_answers=len(gold_counts) or None,
                   routes=[route_summary(r, by_system) for r in routes if r["system"] in by_system], **info)


def route_summary(route: dict, by_system: dict[str, list[EvalRow]]) -> RouteSummary:
    """The router's rows against System 2's on the same test items, with its choice and curve."""
    mine, theirs = by_system[route["system"]], {r.id: r for r in by_system[route["system2"]]}
    other, distilled = [theirs[r.id] for r in mine], by_system[route["distilled"]]
    d = paired_difference([r.correct for r in mine], [r.correct for r in other])
    choice, n = route["choice"], len(mine)
    return RouteSummary(
        label=mine[0].label, distilled=by_system[route["distilled"]][0].label, system2=other[0].label,
        confidence=route["confidence"], holdout=route["holdout"], with_reference=route["with_reference"],
        threshold=choice["threshold"], rule=choice["rule"], holdout_agreement=choice["agreement"],
        system2_agreement=choice["system2_agreement"], fallback_share=sum(bool(r.routed) for r in mine) / n,
        accuracy=sum(r.correct for r in mine) / n, mean_tokens=sum(r.tokens for r in mine) / n,
        system2_mean_tokens=sum(r.tokens for r in other) / n,
        distilled_accuracy=sum(r.correct for r in distilled) / len(distilled),
        distilled_mean_tokens=sum(r.tokens for r in distilled) / len(distilled),
        against_system2=Comparison.of(mine[0].label, other[0].label, d),
        curve=[RoutePoint(**p) for p in route["curve"]])


def system1_baseline(scores: list[SystemScore]) -> SystemScore | None:
    """The System 1 every other system is paired with: the most accurate System 1 prompt the run evaluated
    (zero-shot, few-shot), so no gain is claimed over a weaker System 1 than the run had; the first on ties."""
    system1 = [s for s in scores if s.kind == "system1"]
    return max(system1, key=lambda s: s.accuracy) if system1 else None


def write_results(results: Results, run_dir: Path) -> Results:
    """``results.json``, ``results.md`` and the accuracy-vs-tokens plot in ``run_dir``."""
    plot_accuracy_vs_tokens([s.model_dump() for s in results.scores], run_dir / rundir.PLOT,
                            title=f"{results.task} — {results.model}", metric=results.metric)
    results.plot = rundir.PLOT
    (run_dir / RESULTS_JSON).write_text(results.model_dump_json(indent=1), encoding="utf-8")
    (run_dir / RESULTS_MD).write_text(markdown(results), encoding="utf-8")
    return results


# -- rendering ----------------------------------------------------------------------------------

def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def interval(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def _group_names(results: Results, categories: bool = False) -> list[str]:
    """Sub-populations scored separately (SycophancyEval's biased / unbiased, a judge's test sets);
    ``categories=True`` gives the finer "set/category" groups (MT-bench's categories)."""
    return sorted({g for s in results.scores for g in (s.by_group or {}) if ("/" in g) == categories})


def _group_cell(s: SystemScore, g: str) -> str:
    """Accuracy in group ``g``; for paired tasks "agreement / % inconsistent", the paper's Table 3 layout."""
    acc = pct((s.by_group or {}).get(g))
    flips = (s.inconsistent_by_group or {}).get(g)
    return acc if flips is None else f"{acc} / {pct(flips)}"


def _paper(ref) -> str:
    if not ref:
        return ""
    return ref if isinstance(ref, str) else f"{ref[0]}% / {ref[1]}"


def markdown(results: Results, level: int = 1, assets: str = "") -> str:
    """``results.md``; ``level`` is the title's heading level and ``assets`` a prefix for the plot's
    path, so a larger report can embed it (``sys2distill reproduce``)."""
    h = "#" * level
    paper = PAPER.get(results.task, {})
    groups = _group_names(results)
    paired = any(s.inconsistent is not None for s in results.scores)
    lines = [f"{h} {results.task} — {results.model}", ""]
    if results.verdicts:
        lines += [f"{h}# Distillability verdict", "", *[f"- {v.sentence}" for v in results.verdicts], "",
                  "Gap recovered = (distilled − System 1) / (System 2 − System 1) in accuracy, reported only when the "
                  "System 2 gap is clear of zero; paired 95% intervals (Newcombe) and exact McNemar tests on the same "
                  "test items; token ratio = distilled / System 2 mean generated tokens (paired bootstrap interval).", ""]
    lines += [f"| system | {results.metric} (95% CI) | " + ("% inconsistent | " if paired else "")
              + "".join(f"{g}{' (agree / incons.)' if paired else ''} | " for g in groups)
              + "#tokens | fidelity | paper (Llama-2-70B) |",
              "|---|---|" + "---|" * (len(groups) + paired) + "---|---|---|"]
    for s in results.scores:
        lines.append(f"| {s.label} | {pct(s.accuracy)} ({interval(s.accuracy_ci)}) | "
                     + (f"{pct(s.inconsistent)} | " if paired else "")
                     + "".join(f"{_group_cell(s, g)} | " for g in groups)
                     + f"{s.mean_tokens:.1f} | {pct(s.fidelity)} | {_paper(paper.get(s.system))} |")
    n = results.scores[0].n if results.scores else 0
    fidelity_n = results.config.get("evaluate", {}).get("fidelity_samples")
    system2_answer = ("greedy answer" if fidelity_n == 0 else
                      f"majority answer over {fidelity_n} samples" if fidelity_n else "majority answer")
    lines += ["", f"Test items: {n}; greedy answers; 95% Wilson intervals. #tokens = mean generated tokens per answer, "
              f"intermediate steps included. Fidelity = how often the distilled answer equals System 2's {system2_answer} "
              "on the test input." + (" % inconsistent = share of test pairs whose verdict changes when the two responses "
                                      "swap places." if paired else ""),
              f"Extraction rule ({results.task} v{results.task_version}): {results.extraction_rule}"]
    if results.constant_baseline:
        answer, share = results.constant_baseline
        lines[-1:-1] = [f"Always answering “{answer}” (the commonest gold answer) would score {pct(share)} on these items."]
    if any(s.kind == "control" for s in results.scores):
        lines += ["", "Controls (distill.controls) are diagnostics, not systems: the same SFT on the same kept inputs with "
                  "the kept answers shuffled across inputs, or with the train labels (gold): the one training set that reads them."]
    lines += _comparison_lines(results, h) + _route_lines(results, h) + _filter_lines(results, h)
    lines += _answer_lines(results, h)
    lines += _category_lines(results, h)
    lines += _kvote_lines(results, h)
    if results.plot:
        lines += ["", f"![accuracy vs generated tokens]({assets}{results.plot})"]
    lines += ["", f"{h}# Stages", "", "| stage | wall time (s) | peak RSS (GiB) | generated tokens |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['seconds']} | {v['peak_rss_gib']} | {v.get('generated_tokens') if v.get('generated_tokens') is not None else ''} |"
              for k, v in results.stages.items()]
    repairs = [f"- {file}: {r['problem']}; " + ("remade" if r.get("remade") else
               f"{r.get('samples_kept', 0)} samples kept, {r.get('samples_regenerated', 0)} drawn again")
               for stage, v in results.stages.items() for file, r in (v.get("repaired") or {}).items()]
    if repairs:
        lines += ["", "Repaired on a rerun (damaged or incomplete files; only what was missing was made again):", *repairs]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results.versions.items()), ""]
    return "\n".join(lines)


CURVE_ROWS = 11  # the router's curve in the report: the thresholds nearest 0%, 10%, ..., 100% sent to System 2


def _route_lines(results: Results, h: str) -> list[str]:
    """The router: its chosen point against System 2 (paired), how it was chosen, and its curve."""
    lines = []
    for r in results.routes:
        c = r.against_system2
        below = "every input" if r.threshold is None else f"confidence below {r.threshold:.3g}"
        lines += ["", f"{h}# {r.label}", "",
                  f"{r.distilled} answers; {r.system2} answers where the distilled model's {r.confidence} confidence is "
                  f"under the threshold ({below}), chosen without labels on {r.holdout} held-out train inputs "
                  f"({r.with_reference} with a System 2 majority answer): {r.rule}. There, the routed answers agree with "
                  f"System 2's majority answer on {pct(r.holdout_agreement)}, System 2's greedy answers on "
                  f"{pct(r.system2_agreement)}.", "",
                  f"On the test items it sends {pct(r.fallback_share)} to {r.system2} and scores {pct(r.accuracy)}: "
                  f"{c.points()} against {r.system2}, at {r.mean_tokens:.1f} vs {r.system2_mean_tokens:.1f} tokens per "
                  f"answer ({pct(r.mean_tokens / r.system2_mean_tokens if r.system2_mean_tokens else None)})."
                  + (f" It costs more than {r.system2} alone: {r.distilled} answers every input first "
                     f"({r.distilled_mean_tokens:.1f} tokens per answer, {pct(r.distilled_accuracy)} right), and "
                     f"{pct(r.fallback_share)} of the inputs then go to {r.system2} as well."
                     if r.mean_tokens > r.system2_mean_tokens else ""), "",
                  "| threshold | sent to System 2 | accuracy | #tokens |", "|---|---|---|---|"]
        shown = {id(min(r.curve, key=lambda p: abs(p.fallback_share - i / (CURVE_ROWS - 1)))) for i in range(CURVE_ROWS)}
        points = [(p.fallback_share, _threshold(p.threshold), p.accuracy, p.mean_tokens) for p in r.curve if id(p) in shown
                  and (p.fallback_share, p.accuracy) != (r.fallback_share, r.accuracy)]
        points.append((r.fallback_share, f"**{_threshold(r.threshold)} (chosen)**", r.accuracy, r.mean_tokens))
        lines += [f"| {t} | {pct(share)} | {pct(acc)} | {tokens:.1f} |" for share, t, acc, tokens in sorted(points)]
    return lines


def _threshold(t: float | None) -> str:
    return "above all" if t is None else f"{t:.3g}"


def _comparison_lines(results: Results, h: str) -> list[str]:
    """Every system paired with the run's System 1 on the same test items."""
    if not results.comparisons:
        return []
    base = results.comparisons[0].baseline
    lines = ["", f"{h}# Paired with {base}", "", f"| system | difference (95% CI) | right where {base} is wrong "
             f"| wrong where {base} is right | McNemar p |", "|---|---|---|---|---|"]
    return lines + [f"| {c.system} | {100 * c.diff:+.1f} points ({100 * c.diff_ci[0]:+.1f} to {100 * c.diff_ci[1]:+.1f}) "
                    f"| {c.wins} | {c.losses} | {c.p_value:.2g} |" for c in results.comparisons]


def _filter_lines(results: Results, h: str) -> list[str]:
    """Each entry's filter yield and precision, and how its model trained."""
    lines = ["", f"{h}# Consistency filter", "",
             "| distilled from | inputs | kept | yield | kept answers right (95% CI) | dropped because | train steps | final loss |",
             "|---|---|---|---|---|---|---|---|"]
    for name, f in results.filter.items():
        t = f.train or {}
        steps = f"not trained: {f.not_trained}" if f.not_trained else t.get("steps", "")
        right = f"{pct(f.precision)} ({interval(f.precision_ci)})" if f.precision is not None else "n/a"
        loss = t.get("final_loss")
        lines.append(f"| {name} | {f.inputs} | {f.kept} | {100 * f.kept_share:.0f}% | {right} "
                     f"| {f.dropped_because or '-'} | {steps} | {'' if loss is None else f'{loss:.4g}'} |")
    return lines + ["", "Kept answers right = the filter's precision, scored with the train labels, which distillation never reads (only the gold control trains on them)."]


def _answer_lines(results: Results, h: str) -> list[str]:
    """The head of each system's answer histogram beside the gold answers': a model that learnt one answer
    (or the answers' format) shows a commonest answer far commoner than gold's."""
    if not any(s.top_answer for s in results.scores):
        return []
    lines = ["", f"{h}# Answers", "", "| system | commonest answer (share of items) | distinct answers | no answer |",
             "|---|---|---|---|"]
    if results.constant_baseline:
        answer, share = results.constant_baseline
        lines.append(f"| gold | “{answer}” ({pct(share)}) | {results.gold_answers or ''} | |")
    for s in results.scores:
        top = f"“{s.top_answer[0]}” ({pct(s.top_answer[1])})" if s.top_answer else "-"
        lines.append(f"| {s.label} | {top} | {s.distinct_answers} | {pct(s.extraction_failures)} |")
    return lines


def _category_lines(results: Results, h: str) -> list[str]:
    """Per-category scores (the paper's Table 6 for MT-bench), when the task reports categories."""
    categories = _group_names(results, categories=True)
    if not categories:
        return []
    lines = ["", f"{h}# {results.metric.capitalize()} per category", "",
             "| system | " + " | ".join(categories) + " |", "|---|" + "---|" * len(categories)]
    return lines + [f"| {s.label} | " + " | ".join(_group_cell(s, c) for c in categories) + " |" for s in results.scores]


def _kvote_lines(results: Results, h: str) -> list[str]:
    """Accuracy / #tokens when voting over k sampled answers (Table 4's layout)."""
    rows = [s for s in results.scores if s.by_k]
    if not rows:
        return []
    ks = [e.k for e in rows[0].by_k]
    paper = PAPER_K.get(results.task, {})
    t = results.config["generation"]
    lines = ["", f"{h}# Majority vote over k samples", "",
             f"Accuracy (95% CI) / mean generated tokens per test item (all k samples counted), k answers sampled at "
             f"temperature {t['temperature']}, top-p {t['top_p']}, at most {t['max_tokens']} tokens; ties go to the "
             "answer sampled first.", "",
             "| system | " + " | ".join(f"k={k}" for k in ks) + " | ties at max k | paper (Llama-2-70B) |",
             "|---|" + "---|" * len(ks) + "---|---|"]
    for s in rows:
        anchor = "; ".join(f"k={k}: {a}% / {b}" for k, (a, b) in paper.get(s.system, {}).items())
        lines.append(f"| {s.label} | " + " | ".join(f"{pct(e.accuracy)} ({interval(e.accuracy_ci)}) / {e.mean_tokens:.0f}"
                                                   for e in s.by_k) + f" | {pct(s.by_k[-1].ties)} | {anchor} |")
    return lines


def print_table(results: Results, console: Console | None = None) -> None:
    """The table and the verdict on the terminal."""
    console = console or Console()
    table = Table(title=f"{results.task} — {results.model}")
    groups = _group_names(results)
    paired = any(s.inconsistent is not None for s in results.scores)
    for col in ("system", results.metric, "95% CI", *(["% inconsistent"] if paired else []), *groups, "#tokens", "fidelity"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for s in results.scores:
        table.add_row(s.label, pct(s.accuracy), interval(s.accuracy_ci), *([pct(s.inconsistent)] if paired else []),
                      *[_group_cell(s, g) for g in groups], f"{s.mean_tokens:.1f}", pct(s.fidelity))
    console.print(table)
    if results.constant_baseline:
        console.print(f"Always answering “{results.constant_baseline[0]}” would score {pct(results.constant_baseline[1])}.")
    for v in results.verdicts:
        console.print(v.sentence)

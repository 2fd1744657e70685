"""results.json and results.md: the paper-style table plus everything needed to trust it
(model identity, extraction rule, filter yield, versions, wall time and peak memory per stage).
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from sys2distill import __version__
from sys2distill.models import model_identity
from sys2distill.plot import PLOT_FILE, plot_accuracy_vs_tokens
from sys2distill.records import FilterDecision, read_records
from sys2distill.verdict import run_verdicts

if TYPE_CHECKING:
    from sys2distill.pipeline import Pipeline

# arXiv 2407.06023 Table 1 (Llama-2-70B-chat): accuracy %, #tokens — anchors, not targets.
PAPER = {
    "last_letter": {"system1": (30.0, 27.1), "distill_system1": (69.5, 24.4), "rar_1step": (39.5, 106.6),
                    "rar_2step": (44.5, 41.5), "distill_rar_2step": (98.0, 25.5)},
    "coin_flip": {"system1": (56.1, 61.9), "distill_system1": (54.5, 30.4), "rar_1step": (58.5, 158.9),
                  "rar_2step": (77.2, 112.4), "distill_rar_2step": (75.69, 50.3)},
    # Table 4 at k=1; the paper's System 1 here is 8-shot without CoT.
    "gsm8k": {"system1": (7.58, 57), "cot": (52.77, 270), "cot_fewshot": (36.39, 297), "distill_cot": (7.13, 18)},
    # Table 3: human agreement % / % inconsistent / #tokens on OASST2 and on MT-bench.
    "pairwise_judge": {"system1": "OASST2 32.0 / 56.7 / 4; MT-bench 28.1 / 80.9 / 4",
                       "cot": "OASST2 45.2 / 37.7 / 432.6; MT-bench 58.9 / 30.8 / 411.8",
                       "bsm": "OASST2 49.1 / 30.4 / 2117.8; MT-bench 64.5 / 21.1 / 2063.1",
                       "distill_bsm": "OASST2 58.4 / 12.2 / 4; MT-bench 72.4 / 9.1 / 4"},
}
# Table 4 at k = 5 and 10 (majority vote; #tokens count all k samples).
PAPER_K = {"gsm8k": {"system1": {5: (9.40, 295), 10: (10.31, 620)}, "cot": {5: (57.54, 1385), 10: (59.44, 2760)},
                     "cot_fewshot": {5: (54.97, 1560), 10: (63.84, 3120)}, "distill_cot": {5: (7.13, 90), 10: (7.35, 180)}}}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"sys2distill": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def collect(p: Pipeline) -> dict:
    scores = json.loads((p.dir / "evaluate" / "scores.json").read_text())
    yields = {}
    for name in (spec.key for spec in p.cfg.distill.specs):
        decisions = read_records(p.dir / "filter" / f"{name}.jsonl", FilterDecision)
        kept = sum(d.kept for d in decisions)
        yields[name] = {"inputs": len(decisions), "kept": kept, "yield": kept / len(decisions) if decisions else 0.0,
                        "dropped_because": dict(Counter(d.reason.split(" ")[0] if "agreement" in d.reason else d.reason
                                                        for d in decisions if not d.kept))}
        done = p.dir / "train" / name / "DONE.json"
        if done.exists():
            yields[name]["train"] = json.loads(done.read_text())
    stages = {}
    for stage in ("generate", "filter", "train", "evaluate"):
        marker = p.dir / stage / "STAGE.json"
        m = json.loads(marker.read_text()) if marker.exists() else {}
        if m.get("done"):
            stages[stage] = {"seconds": m["seconds"], "peak_rss_gib": m["peak_rss_gib"]}
    return {
        "task": p.cfg.task.name, "model": model_identity(p.cfg.model), "config": p.cfg.model_dump(),
        "extraction_rule": p.task.extraction_rule, "task_version": p.task.version, "metric": p.task.metric,
        "scores": scores, "filter": yields, "stages": stages, "versions": _versions(),
        "verdicts": run_verdicts(p, scores),
    }


def _groups(scores: list[dict], categories: bool = False) -> list[str]:
    """Sub-populations scored separately (e.g. SycophancyEval's biased / unbiased prompts, a judge's
    test sets); ``categories=True`` gives the finer "set/category" groups (MT-bench's categories)."""
    return sorted({g for s in scores for g in (s.get("by_group") or {}) if ("/" in g) == categories})


def _paper(ref) -> str:
    if not ref:
        return ""
    return ref if isinstance(ref, str) else f"{ref[0]}% / {ref[1]}"


def _group_cell(s: dict, g: str) -> str:
    """Accuracy in group ``g``; for paired tasks "agreement / % inconsistent", the paper's Table 3 layout."""
    acc = _pct((s.get("by_group") or {}).get(g))
    flips = (s.get("inconsistent_by_group") or {}).get(g)
    return acc if flips is None else f"{acc} / {_pct(flips)}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def markdown(results: dict) -> str:
    paper = PAPER.get(results["task"], {})
    groups = _groups(results["scores"])
    metric = results.get("metric", "accuracy")
    paired = any(s.get("inconsistent") is not None for s in results["scores"])
    lines = [f"# {results['task']} — {results['model']}", "", *_verdict_lines(results),
             f"| system | {metric} (95% CI) | " + ("% inconsistent | " if paired else "")
             + "".join(f"{g}{' (agree / incons.)' if paired else ''} | " for g in groups) + "#tokens | fidelity | paper (Llama-2-70B) |",
             "|---|---|" + "---|" * (len(groups) + paired) + "---|---|---|"]
    for s in results["scores"]:
        lo, hi = s["accuracy_ci"]
        lines.append(f"| {s['label']} | {100 * s['accuracy']:.1f}% ({100 * lo:.1f}–{100 * hi:.1f}) | "
                     + (f"{_pct(s.get('inconsistent'))} | " if paired else "")
                     + "".join(f"{_group_cell(s, g)} | " for g in groups)
                     + f"{s['mean_tokens']:.1f} | {_pct(s['fidelity'])} | {_paper(paper.get(s['system']))} |")
    n = results["scores"][0]["n"] if results["scores"] else 0
    lines += ["", f"Test items: {n}. #tokens = mean generated tokens per answer, intermediate steps included. "
              "Fidelity = how often the distilled answer equals System 2's majority answer on the test input."
              + (" % inconsistent = share of test pairs whose verdict changes when the two responses swap places."
                 if paired else ""),
              f"Extraction rule (v{results['task_version']}): {results['extraction_rule']}", "", "## Consistency filter", "",
              "| distilled from | inputs | kept | yield | dropped because | train steps | final loss |", "|---|---|---|---|---|---|---|"]
    for name, y in results["filter"].items():
        t = y.get("train", {})
        lines.append(f"| {name} | {y['inputs']} | {y['kept']} | {100 * y['yield']:.0f}% | {y['dropped_because'] or '-'} "
                     f"| {t.get('steps', '')} | {t.get('final_loss', '')} |")
    lines += _category_lines(results)
    lines += _kvote_lines(results)
    if results.get("plot"):
        lines += ["", f"![accuracy vs generated tokens]({results['plot']})"]
    lines += ["", "## Stages", "", "| stage | wall time (s) | peak RSS (GiB) |", "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']} | {v['peak_rss_gib']} |" for k, v in results["stages"].items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), ""]
    return "\n".join(lines)


def _verdict_lines(results: dict) -> list[str]:
    """The distillability verdict, first thing in the report (see ``sys2distill.verdict``)."""
    if not results.get("verdicts"):
        return []
    return ["## Distillability verdict", "", *[f"- {v['sentence']}" for v in results["verdicts"]], "",
            "Gap recovered = (distilled − System 1) / (System 2 − System 1) in accuracy; token ratio = distilled / "
            "System 2 mean generated tokens; 95% bootstrap intervals over test items; greedy answers.", ""]


def _category_lines(results: dict) -> list[str]:
    """Per-category scores (the paper's Table 6 for MT-bench), when the task reports categories."""
    categories = _groups(results["scores"], categories=True)
    if not categories:
        return []
    lines = ["", f"## {results.get('metric', 'accuracy').capitalize()} per category", "",
             "| system | " + " | ".join(categories) + " |", "|---|" + "---|" * len(categories)]
    for s in results["scores"]:
        lines.append(f"| {s['label']} | " + " | ".join(_group_cell(s, c) for c in categories) + " |")
    return lines


def _kvote_lines(results: dict) -> list[str]:
    """Accuracy / #tokens when voting over k sampled answers (Table 4's layout)."""
    rows = [s for s in results["scores"] if s.get("by_k")]
    if not rows:
        return []
    ks = [e["k"] for e in rows[0]["by_k"]]
    paper = PAPER_K.get(results["task"], {})
    t = results["config"]["generation"]
    lines = ["", "## Majority vote over k samples", "",
             f"Accuracy / mean generated tokens per test item (all k samples counted), k answers sampled at "
             f"temperature {t['temperature']}, top-p {t['top_p']}, at most {t['max_tokens']} tokens; ties go to the "
             "answer sampled first.", "",
             "| system | " + " | ".join(f"k={k}" for k in ks) + " | ties at max k | paper (Llama-2-70B) |",
             "|---|" + "---|" * len(ks) + "---|---|"]
    for s in rows:
        ref = paper.get(s["system"], {})
        anchor = "; ".join(f"k={k}: {a}% / {b}" for k, (a, b) in ref.items())
        lines.append(f"| {s['label']} | " + " | ".join(f"{100 * e['accuracy']:.1f}% / {e['mean_tokens']:.0f}" for e in s["by_k"])
                     + f" | {_pct(s['by_k'][-1]['ties'])} | {anchor} |")
    return lines


def print_table(results: dict, console: Console | None = None) -> None:
    table = Table(title=f"{results['task']} — {results['model']}")
    groups = _groups(results["scores"])
    paired = any(s.get("inconsistent") is not None for s in results["scores"])
    for col in ("system", results.get("metric", "accuracy"), "95% CI", *(["% inconsistent"] if paired else []),
                *groups, "#tokens", "fidelity"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for s in results["scores"]:
        lo, hi = s["accuracy_ci"]
        table.add_row(s["label"], _pct(s["accuracy"]), f"{100 * lo:.1f}–{100 * hi:.1f}",
                      *([_pct(s.get("inconsistent"))] if paired else []),
                      *[_group_cell(s, g) for g in groups], f"{s['mean_tokens']:.1f}", _pct(s["fidelity"]))
    (console or Console()).print(table)
    for v in results.get("verdicts", []):
        (console or Console()).print(v["sentence"])


def write_report(p: Pipeline) -> dict:
    results = collect(p)
    plot_accuracy_vs_tokens(results["scores"], p.dir / PLOT_FILE, title=f"{results['task']} — {results['model']}",
                            metric=results["metric"])
    results["plot"] = PLOT_FILE
    (p.dir / "results.json").write_text(json.dumps(results, indent=1))
    (p.dir / "results.md").write_text(markdown(results))
    print_table(results)
    return results

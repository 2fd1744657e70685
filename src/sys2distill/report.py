"""results.json and results.md: the paper-style table plus everything needed to trust it
(model identity, extraction rule, filter yield, versions, wall time and peak memory per stage).
"""

from __future__ import annotations

import copy
import json
import platform
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from sys2distill import __version__
from sys2distill.errors import UserError
from sys2distill.models import model_identity
from sys2distill.paper import PAPER, PAPER_K
from sys2distill.plot import PLOT_FILE, plot_accuracy_vs_tokens
from sys2distill.records import Example, FilterDecision, Trace, read_records
from sys2distill.verdict import run_verdicts

if TYPE_CHECKING:
    from sys2distill.pipeline import Pipeline

def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"sys2distill": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def train_labels(p: Pipeline) -> dict[str, Example] | None:
    """The train inputs *with* labels, for the filter's precision only; None when the task cannot
    rebuild them identically (then precision is not reported)."""
    task = copy.copy(p.task)
    task.reveal_train_labels = True
    try:
        labeled = task.load("train")
    except (UserError, OSError):  # a source whose files are gone: precision is optional
        return None
    frozen = read_records(p.dir / "data" / "train.jsonl", Example)
    if [(e.id, e.question) for e in labeled] != [(e.id, e.question) for e in frozen] or any(e.answer is None for e in labeled):
        return None
    return {e.id: e for e in labeled}


def _stage_tokens(p: Pipeline) -> dict[str, int]:
    """Generated tokens spent per stage: System 2 sampling, the filter's own calls (USC), evaluation."""
    out = {"generate": sum(t.tokens for f in sorted((p.dir / "generate").glob("*.jsonl")) for t in read_records(f, Trace))}
    out["filter"] = sum(d.details.get("tokens", 0) for f in sorted((p.dir / "filter").glob("*.jsonl"))
                        for d in read_records(f, FilterDecision))
    out["evaluate"] = sum(t.tokens for f in sorted((p.dir / "evaluate").glob("*.jsonl")) for t in read_records(f, Trace))
    return out


def collect(p: Pipeline) -> dict:
    scores = json.loads((p.dir / "evaluate" / "scores.json").read_text())
    yields = {}
    labels = train_labels(p)
    for name in (spec.key for spec in p.cfg.distill.specs):
        decisions = read_records(p.dir / "filter" / f"{name}.jsonl", FilterDecision)
        kept = [d for d in decisions if d.kept]
        yields[name] = {"inputs": len(decisions), "kept": len(kept), "yield": len(kept) / len(decisions) if decisions else 0.0,
                        "dropped_because": dict(Counter(d.reason.split(" ")[0] if "agreement" in d.reason else d.reason
                                                        for d in decisions if not d.kept)),
                        # How often a kept answer was right (labels exist for the synthetic and labelled sets).
                        "precision": (sum(p.task.correct(d.answer, labels[d.example_id]) for d in kept) / len(kept)
                                      if labels and kept else None)}
        done, skipped = p.dir / "train" / name / "DONE.json", p.dir / "train" / name / "SKIPPED.json"
        if done.exists():
            yields[name]["train"] = json.loads(done.read_text())
        elif skipped.exists():
            yields[name]["not_trained"] = json.loads(skipped.read_text())["reason"]
    stages, tokens = {}, _stage_tokens(p)
    for stage in ("generate", "filter", "train", "evaluate"):
        marker = p.dir / stage / "STAGE.json"
        m = json.loads(marker.read_text()) if marker.exists() else {}
        if m.get("done"):
            stages[stage] = {"seconds": m["seconds"], "peak_rss_gib": m["peak_rss_gib"], "generated_tokens": tokens.get(stage)}
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
              "| distilled from | inputs | kept | yield | kept answers right | dropped because | train steps | final loss |",
              "|---|---|---|---|---|---|---|---|"]
    for name, y in results["filter"].items():
        t = y.get("train", {})
        steps = f"not trained: {y['not_trained']}" if y.get("not_trained") else t.get("steps", "")
        lines.append(f"| {name} | {y['inputs']} | {y['kept']} | {100 * y['yield']:.0f}% | {_pct(y.get('precision')) or 'n/a'} "
                     f"| {y['dropped_because'] or '-'} | {steps} | {t.get('final_loss', '')} |")
    lines += ["", "Kept answers right = the filter's precision, scored with the train labels that the pipeline never reads."]
    lines += _category_lines(results)
    lines += _kvote_lines(results)
    if results.get("plot"):
        lines += ["", f"![accuracy vs generated tokens]({results['plot']})"]
    lines += ["", "## Stages", "", "| stage | wall time (s) | peak RSS (GiB) | generated tokens |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['seconds']} | {v['peak_rss_gib']} | {v.get('generated_tokens') if v.get('generated_tokens') is not None else ''} |"
              for k, v in results["stages"].items()]
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

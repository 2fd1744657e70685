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
from sys2distill.records import FilterDecision, read_records

if TYPE_CHECKING:
    from sys2distill.pipeline import Pipeline

# arXiv 2407.06023 Table 1 (Llama-2-70B-chat): accuracy %, #tokens — anchors, not targets.
PAPER = {
    "last_letter": {"system1": (30.0, 27.1), "distill_system1": (69.5, 24.4), "rar_1step": (39.5, 106.6),
                    "rar_2step": (44.5, 41.5), "distill_rar_2step": (98.0, 25.5)},
    "coin_flip": {"system1": (56.1, 61.9), "distill_system1": (54.5, 30.4), "rar_1step": (58.5, 158.9),
                  "rar_2step": (77.2, 112.4), "distill_rar_2step": (75.69, 50.3)},
}


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
        if marker.exists():
            m = json.loads(marker.read_text())
            stages[stage] = {"seconds": m["seconds"], "peak_rss_gib": m["peak_rss_gib"]}
    return {
        "task": p.cfg.task.name, "model": model_identity(p.cfg.model), "config": p.cfg.model_dump(),
        "extraction_rule": p.task.extraction_rule, "task_version": p.task.version,
        "scores": scores, "filter": yields, "stages": stages, "versions": _versions(),
    }


def _groups(scores: list[dict]) -> list[str]:
    """Sub-populations scored separately (e.g. SycophancyEval's biased / unbiased prompts)."""
    return sorted({g for s in scores for g in (s.get("by_group") or {})})


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def markdown(results: dict) -> str:
    paper = PAPER.get(results["task"], {})
    groups = _groups(results["scores"])
    lines = [f"# {results['task']} — {results['model']}", "",
             "| system | accuracy (95% CI) | " + "".join(f"{g} | " for g in groups) + "#tokens | fidelity | paper (Llama-2-70B) |",
             "|---|---|" + "---|" * len(groups) + "---|---|---|"]
    for s in results["scores"]:
        lo, hi = s["accuracy_ci"]
        ref = paper.get(s["system"])
        by_group = s.get("by_group") or {}
        lines.append(f"| {s['label']} | {100 * s['accuracy']:.1f}% ({100 * lo:.1f}–{100 * hi:.1f}) | "
                     + "".join(f"{_pct(by_group.get(g))} | " for g in groups)
                     + f"{s['mean_tokens']:.1f} | {_pct(s['fidelity'])} | {f'{ref[0]}% / {ref[1]}' if ref else ''} |")
    n = results["scores"][0]["n"] if results["scores"] else 0
    lines += ["", f"Test items: {n}. #tokens = mean generated tokens per answer, intermediate steps included. "
              "Fidelity = how often the distilled answer equals System 2's majority answer on the test input.",
              f"Extraction rule (v{results['task_version']}): {results['extraction_rule']}", "", "## Consistency filter", "",
              "| distilled from | inputs | kept | yield | dropped because | train steps | final loss |", "|---|---|---|---|---|---|---|"]
    for name, y in results["filter"].items():
        t = y.get("train", {})
        lines.append(f"| {name} | {y['inputs']} | {y['kept']} | {100 * y['yield']:.0f}% | {y['dropped_because'] or '-'} "
                     f"| {t.get('steps', '')} | {t.get('final_loss', '')} |")
    lines += ["", "## Stages", "", "| stage | wall time (s) | peak RSS (GiB) |", "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']} | {v['peak_rss_gib']} |" for k, v in results["stages"].items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), ""]
    return "\n".join(lines)


def print_table(results: dict, console: Console | None = None) -> None:
    table = Table(title=f"{results['task']} — {results['model']}")
    groups = _groups(results["scores"])
    for col in ("system", "accuracy", "95% CI", *groups, "#tokens", "fidelity"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for s in results["scores"]:
        lo, hi = s["accuracy_ci"]
        by_group = s.get("by_group") or {}
        table.add_row(s["label"], _pct(s["accuracy"]), f"{100 * lo:.1f}–{100 * hi:.1f}",
                      *[_pct(by_group.get(g)) for g in groups], f"{s['mean_tokens']:.1f}", _pct(s["fidelity"]))
    (console or Console()).print(table)


def write_report(p: Pipeline) -> dict:
    results = collect(p)
    (p.dir / "results.json").write_text(json.dumps(results, indent=1))
    (p.dir / "results.md").write_text(markdown(results))
    print_table(results)
    return results

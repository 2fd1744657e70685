"""Stage 5, report: the paper-style table, paired comparisons and the distillability verdict, from the
evaluation rows and records alone (``report.build_results``), into ``results.json`` / ``results.md`` and
the accuracy-vs-tokens plot; each checkpoint's model card gets the results table."""

from __future__ import annotations

import json
import platform

from sys2distill import rundir
from sys2distill.config import RunConfig
from sys2distill.evaluator import EvalRow, FilterCheck
from sys2distill.hub import write_model_cards
from sys2distill.models import model_identity
from sys2distill.records import FilterDecision, read_records
from sys2distill.report import build_results, write_results
from sys2distill.stages.context import Reads, RunContext
from sys2distill.tracking import stage_tokens

# The report copies the whole config into results.json; every value that changes a number is in an
# earlier stage's fingerprint, which the report's includes.
READS = Reads(keys=("model", "task", "distill.methods"), neutral=tuple(RunConfig.model_fields),
              extends=("distill.controls", "route"),
              writes=(rundir.RESULTS_JSON, rundir.RESULTS_MD, rundir.PLOT, f"train/*/{rundir.CARD}"))
TIMED = ("generate", "filter", "train", "evaluate")  # the stages whose wall time and memory the report shows


def versions() -> dict[str, str]:
    """The versions that made a result, for its report."""
    import importlib.metadata as md

    from sys2distill import __version__

    out = {"sys2distill": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def stage_records(ctx: RunContext) -> dict[str, dict]:
    """Wall time and peak memory of each finished stage, the tokens it generated, and what a rerun repaired."""
    out = {}
    for stage in TIMED:
        path = rundir.record_path(ctx.dir, stage)
        m = json.loads(path.read_text()) if path.exists() else {}
        if m.get("done"):
            out[stage] = {"seconds": m["seconds"], "peak_rss_gib": m["peak_rss_gib"],
                          "generated_tokens": stage_tokens(ctx.dir, stage), "repaired": m.get("repaired") or {}}
    return out


def run(ctx: RunContext) -> None:
    specs = ctx.cfg.distill.specs
    checks = ctx.dir / rundir.FILTER_CHECK
    write_results(build_results(
        read_records(ctx.dir / rundir.ROWS, EvalRow),
        decisions={spec.key: read_records(ctx.dir / "filter" / f"{spec.key}.jsonl", FilterDecision) for spec in specs},
        checks=read_records(checks, FilterCheck) if checks.exists() else None,
        trained={spec.key: ctx.trained(spec.key) for spec in specs},
        stages=stage_records(ctx),
        info={"task": ctx.cfg.task.name, "model": model_identity(ctx.cfg.model), "metric": ctx.task.metric,
              "extraction_rule": ctx.task.extraction_rule, "task_version": ctx.task.version,
              "config": ctx.cfg.model_dump(), "versions": versions()},
        routes=[json.loads(f.read_text()) for f in sorted((ctx.dir / "evaluate").glob("route_*.json"))]), ctx.dir)
    write_model_cards(ctx.dir, ctx.cfg)  # each checkpoint's card gets the results table

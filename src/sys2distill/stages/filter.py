"""Stage 2, filter: keep the inputs whose System 2 answers are self-consistent, and write the SFT data
(arXiv 2407.06023 Sec. 3, steps 3–4: drop the intermediate text, keep consistent final answers).

Per distill entry: the filter's decision per input (``filter/<entry>.jsonl``), the System 1 prompt →
final answer records (``distill/<entry>.jsonl``) with their dataset card, and the data of each control
model (``distill.controls``; the gold control is the one place train labels reach a training set).
"""

from __future__ import annotations

from sys2distill import filters
from sys2distill.config import DistillSpec
from sys2distill.distill_data import build_records, control_records
from sys2distill.errors import UserError
from sys2distill.generation import load_traces
from sys2distill.hub import write_dataset_card
from sys2distill.records import write_jsonl
from sys2distill.registry import lookup
from sys2distill.stages.context import Reads, RunContext
from sys2distill.stages.generate import AMOUNT, ENGINE, MODEL, stop_rule

# Adding a control (distill.controls) makes only its data, model and rows: the stages after generate resume.
READS = Reads(keys=(*MODEL, "distill.methods", "distill.target", "filter", *AMOUNT), neutral=ENGINE,
              extends=("distill.controls",), writes=("filter", "distill"))


def make_filter(ctx: RunContext, spec: DistillSpec):
    f = spec.filter_or(ctx.cfg.filter)
    cls = lookup(filters.REGISTRY, f.name, "filter")
    try:
        return cls(min_agreement=f.min_agreement, enabled=f.enabled, **f.options)
    except TypeError as e:
        raise UserError(f"bad filter.options for {f.name!r}: {e}".replace("__init__() ", "")) from None


def run(ctx: RunContext) -> None:
    train = ctx.examples("train")
    for spec in ctx.cfg.distill.specs:
        traces = load_traces(ctx.dir / "generate" / f"{spec.method}.jsonl")
        rule = stop_rule(ctx, spec.method)
        missing = [ex.id for ex in train if not rule.done([t.answer for t in traces.get(ex.id, [])])]
        if missing:
            raise UserError(f"generate/{spec.method}.jsonl lacks samples for {len(missing)} inputs (e.g. {missing[0]}): "
                            "run the generate stage first")
        n = spec.samples(ctx.cfg.generation)
        traces = {ex.id: traces[ex.id][:n] for ex in train}
        filt = make_filter(ctx, spec)
        decisions = filt.apply(train, traces, ctx.backend() if filt.needs_backend else None)
        write_jsonl(ctx.dir / "filter" / f"{spec.key}.jsonl", decisions)
        records = build_records(train, traces, decisions, ctx.method("system1"), ctx.cfg.distill.target)
        write_jsonl(ctx.dir / "distill" / f"{spec.key}.jsonl", records)
        write_dataset_card(ctx.dir / "distill" / f"{spec.key}.jsonl", run_config=ctx.cfg)
        for control in ctx.controls(spec):
            gold = None
            if control == "gold" and records:  # nothing kept: an empty control, trained never (on_empty: skip)
                labeled = ctx.train_labels()
                if labeled is None:
                    raise UserError(f"distill.controls: gold needs the train labels, and task {ctx.cfg.task.name!r} "
                                    "cannot rebuild them for these inputs: drop the gold control")
                gold = {ex.id: ex for ex in labeled}
            write_jsonl(ctx.control_path("distill", spec, control),
                        control_records(records, control, seed=ctx.cfg.generation.seed, gold=gold, task=ctx.task))

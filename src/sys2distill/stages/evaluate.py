"""Stage 4, evaluate: every system on the held-out test split, scored once (arXiv 2407.06023 Sec. 4).

Greedy answers of each ``evaluate.systems`` method, of each distilled model (asked with the System 1 prompt)
and of each control model, scored into ``evaluate/rows.jsonl`` — one ``EvalRow`` per (system, test item),
every number of the report a function of them; with ``evaluate.k_votes`` also k sampled answers per item
(Table 4), and System 2's answers on the test inputs for the distilled models' fidelity. The filter's kept
answers are scored against the train labels (``evaluate/filter_check.jsonl``), which distillation never reads
(of the other stages only the filter's gold control does: ``distill.controls``).
"""

from __future__ import annotations

import gc
from dataclasses import replace

from sys2distill import rundir
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.backends.build import build_backend
from sys2distill.config import DistillSpec
from sys2distill.evaluator import EvalRow, check_filter, score_rows
from sys2distill.generation import run_method
from sys2distill.models import model_identity
from sys2distill.records import Example, FilterDecision, Trace, read_records, write_jsonl
from sys2distill.stages.context import Reads, RunContext
from sys2distill.stages.generate import ENGINE, MODEL, SAMPLING
from sys2distill.stages.routing import route_rows

READS = Reads(keys=(*MODEL, "distill.methods", "evaluate", *SAMPLING, "generation.num_samples"),
              neutral=(*ENGINE, "generation.chunk_sequences"), extends=("distill.controls", "route"),
              writes=("evaluate", "data/test.jsonl"))


def distilled_label(method) -> str:
    """How reports name a model distilled from ``method``: the paper's "Distill System 1" for a System 1."""
    return f"Distill {method.label}" if method.system1 else f"Distilled {method.label}"


def run(ctx: RunContext) -> None:
    """Greedy answers of every system on the test split, scored once into ``evaluate/rows.jsonl``."""
    ev, test = ctx.cfg.evaluate, ctx.examples("test")
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=ev.max_tokens)
    out, chunk = ctx.dir / "evaluate", ctx.cfg.generation.chunk_sequences
    base = model_identity(ctx.cfg.model)
    rows, voted, greedy_traces = [], {}, {}
    for name in ev.systems:
        m = ctx.method(name)
        traces = greedy_traces[name] = run_method(m, test, ctx.backend(), greedy, out / f"{name}.jsonl", chunk,
                                                  desc=f"evaluate {name}")
        voted[name] = kvote_samples(ctx, name, m, ctx.backend(), test)
        rows += score_rows(ctx.task, test, traces, system=name, label=m.label, method=name, model=base,
                           kind="system1" if m.system1 else "system2", ks=ev.k_votes, samples=voted[name])
    for spec in ctx.distilled_specs():
        rows += distilled_rows(ctx, spec, test, greedy, greedy_traces, voted)
    if ctx.cfg.route is not None:
        rows += route_rows(ctx, test, rows)
    write_jsonl(ctx.dir / rundir.ROWS, rows)
    labeled = ctx.train_labels()
    if labeled is not None:
        checks = [c for spec in ctx.cfg.distill.specs for c in check_filter(
            ctx.task, labeled, spec.key, read_records(ctx.dir / "filter" / f"{spec.key}.jsonl", FilterDecision))]
        write_jsonl(ctx.dir / rundir.FILTER_CHECK, checks)


def distilled_rows(ctx: RunContext, spec: DistillSpec, test: list[Example], greedy: SamplingParams,
                   greedy_traces: dict, voted: dict) -> list[EvalRow]:
    """One distilled model's rows (with its fidelity to System 2 and k-vote samples), then its controls'."""
    ev, out, chunk = ctx.cfg.evaluate, ctx.dir / "evaluate", ctx.cfg.generation.chunk_sequences
    m = ctx.method(spec.method)
    # System 2's majority answer on the *test* inputs, for the fidelity metric. The k-vote
    # samples are drawn the same way (sample j is seeded alone): reuse them when there are enough.
    n_fid = max(ev.fidelity_samples, 1)  # 0 falls back to one sample when System 2 was not evaluated
    if ev.fidelity_samples == 0 and spec.method in greedy_traces:
        system2 = greedy_traces[spec.method]
    elif voted.get(spec.method) and max(ev.k_votes) >= n_fid:
        system2 = {k: v[:n_fid] for k, v in voted[spec.method].items()}
    else:
        system2 = run_method(m, test, ctx.backend(), replace(ctx.sampling(), n=n_fid),
                             out / f"fidelity_{spec.method}.jsonl", chunk, desc=f"fidelity samples {spec.method} ×{n_fid}")
    checkpoint = ctx.dir / "train" / spec.key
    distilled = build_backend(ctx.cfg.backend, str(checkpoint), ctx.dir, checkpoint=True)
    system = f"distill_{spec.key}"
    traces = run_method(ctx.method("system1"), test, distilled, greedy, out / f"{system}.jsonl",
                        chunk, desc=f"evaluate distilled {spec.key}")
    label = distilled_label(m) + (f" ({spec.name})" if spec.name else "")
    rows = score_rows(ctx.task, test, traces, system=system, kind="distilled", method="system1", label=label,
                      source=spec.method, model=str(checkpoint), ks=ev.k_votes, system2_samples=system2,
                      samples=kvote_samples(ctx, system, ctx.method("system1"), distilled, test))
    del distilled
    gc.collect()
    for control in ctx.controls(spec):
        rows += control_rows(ctx, spec, control, label, test, greedy)
    return rows


def control_rows(ctx: RunContext, spec: DistillSpec, control: str, label: str, test: list[Example],
                 greedy: SamplingParams) -> list[EvalRow]:
    """A control model's greedy answers on the test split, scored like a distilled model's."""
    checkpoint = ctx.control_path("train", spec, control)
    if not (checkpoint / rundir.DONE).exists():  # its entry was skipped (the filter kept no input)
        return []
    model = build_backend(ctx.cfg.backend, str(checkpoint), ctx.dir, checkpoint=True)
    system = f"control_{control}_{spec.key}"
    traces = run_method(ctx.method("system1"), test, model, greedy, ctx.dir / "evaluate" / f"{system}.jsonl",
                        ctx.cfg.generation.chunk_sequences, desc=f"evaluate control {control} {spec.key}")
    del model
    gc.collect()
    return score_rows(ctx.task, test, traces, system=system, kind="control", method="system1",
                      label=f"{label}, {control} answers (control)", source=spec.method, model=str(checkpoint),
                      control=control)


def kvote_samples(ctx: RunContext, system: str, method, backend: Backend, test: list[Example]) -> dict[str, list[Trace]] | None:
    """max(k) answers per test input drawn as in ``generation``, for the k-vote columns (None: k_votes is [1])."""
    ev = ctx.cfg.evaluate
    if max(ev.k_votes) == 1:  # the default [1]: the greedy table is the k=1 result
        return None
    params = replace(ctx.sampling(), n=max(ev.k_votes))
    return run_method(method, test, backend, params, ctx.dir / "evaluate" / f"kvote_{system}.jsonl",
                      ctx.cfg.generation.chunk_sequences, desc=f"k-vote samples {system} ×{params.n}")

"""The evaluate stage's router (config ``route``; beyond arXiv 2407.06023): the distilled model where it is
sure, its System 2 method where it is not, scored on the test split as one more system.

The threshold is chosen without labels (``router.choose``) on ``route.holdout`` unlabeled inputs drawn past
``task.train_size`` — the train split extended, so never an input the model was distilled on, never a test
input — against System 2's self-consistent answer there (the majority of ``generation.num_samples``
samples, as the filter votes). Files, under ``evaluate/route_<entry>/``: the distilled model's greedy answers
with their log-probs (``holdout_distilled.jsonl``, ``test_distilled.jsonl``; with ``confidence: agreement``
also its samples), System 2's greedy and sampled answers on the held-out inputs; and
``evaluate/route_<entry>.json``: the choice and the curve over every threshold on the test items.
"""

from __future__ import annotations

import gc
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

from sys2distill import router, rundir, tasks
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.backends.build import build_backend
from sys2distill.config import DistillSpec
from sys2distill.errors import UserError
from sys2distill.evaluator import EvalRow
from sys2distill.filters.majority import majority_vote
from sys2distill.generation import run_method
from sys2distill.records import Example
from sys2distill.stages.context import RunContext
from sys2distill.tasks.base import normalize


def route_spec(ctx: RunContext) -> DistillSpec:
    """The distill entry the router answers with: ``route.entry``, else the first trained System 2 entry."""
    specs = [s for s in ctx.distilled_specs() if (ctx.dir / "train" / s.key / rundir.DONE).exists()]
    key = ctx.cfg.route.entry
    if key is not None:
        spec = next((s for s in specs if s.key == key), None)
        if spec is None:
            raise UserError(f"route.entry {key!r} is not a trained distill entry of this run: choose one of "
                            f"{', '.join(s.key for s in specs) or '(none trained)'}")
    else:
        spec = next((s for s in specs if not ctx.method(s.method).system1), None)
        if spec is None:
            raise UserError("route: this run has no trained model distilled from a System 2 method: set route.entry")
    if spec.method not in ctx.cfg.evaluate.systems:
        raise UserError(f"route: {spec.key!r} falls back to {spec.method}, so evaluate.systems must list {spec.method}")
    return spec


def holdout_inputs(ctx: RunContext, n: int) -> list[Example]:
    """``n`` unlabeled inputs past the train split: the task's train split drawn ``n`` longer, minus the first
    ``task.train_size`` (which must be the run's own train inputs, or the held-out inputs could overlap them)."""
    t = ctx.cfg.task
    try:
        wider = tasks.REGISTRY[t.name](train_size=t.train_size + n, test_size=t.test_size, seed=t.seed,
                                       source=t.source, **t.options).load("train")
    except UserError as e:
        raise UserError(f"route.holdout={n} needs {n} unlabeled inputs past task.train_size: {e}") from None
    train = ctx.examples("train")
    if [e.question for e in wider[:len(train)]] != [e.question for e in train]:
        raise UserError(f"route: task {t.name!r} draws a longer train split that does not begin with this run's train "
                        "inputs, so held-out inputs could be distilled ones: the router cannot choose its threshold here")
    return [replace(e, answer=None) for e in wider[len(train):]]  # unlabeled: the router reads no label


def confidences(ctx: RunContext, model: Backend, items: list[Example], folder: Path,
                name: str) -> tuple[list[float], list[str | None], list[int]]:
    """The distilled model's greedy answers on ``items``, the confidence in each (``route.confidence``) and the
    tokens that confidence cost beyond the answer (agreement: the samples'; log-probs come with the answer)."""
    r, ev, chunk, system1 = ctx.cfg.route, ctx.cfg.evaluate, ctx.cfg.generation.chunk_sequences, ctx.method("system1")
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=ev.max_tokens, logprobs=True)
    traces = run_method(system1, items, model, greedy, folder / f"{name}_distilled.jsonl", chunk,
                        desc=f"route: distilled answers, {name}")
    answers = [norm(traces[ex.id][0].answer) for ex in items]
    if r.confidence == "logprob":
        logprobs = [traces[ex.id][0].steps[-1].logprob for ex in items]
        if any(lp is None for lp in logprobs):
            raise UserError(f"backend {ctx.cfg.backend.name!r} gave no log-probs: set route.confidence=agreement")
        return [router.probability(lp) for lp in logprobs], answers, [0] * len(items)
    sampled = replace(ctx.sampling(), n=r.samples, max_tokens=ev.max_tokens)
    samples = run_method(system1, items, model, sampled, folder / f"{name}_samples.jsonl", chunk,
                         desc=f"route: distilled samples ×{r.samples}, {name}")
    return ([router.agreement_confidence(a, [norm(s.answer) for s in samples[ex.id]]) for a, ex in zip(answers, items)],
            answers, [sum(s.tokens for s in samples[ex.id]) for ex in items])


def norm(answer: str | None) -> str | None:
    return None if answer is None else normalize(answer)


def route_rows(ctx: RunContext, test: list[Example], rows: list[EvalRow]) -> list[EvalRow]:
    """The router's rows on the test split, after choosing its threshold on held-out inputs."""
    spec, r = route_spec(ctx), ctx.cfg.route
    checkpoint, folder = ctx.dir / "train" / spec.key, ctx.dir / "evaluate" / f"route_{spec.key}"
    model = build_backend(ctx.cfg.backend, str(checkpoint), ctx.dir, checkpoint=True)
    holdout = holdout_inputs(ctx, r.holdout)
    held_conf, held_answers, _ = confidences(ctx, model, holdout, folder, "holdout")
    test_conf, _, cost = confidences(ctx, model, test, folder, "test")
    del model
    gc.collect()
    fallback, reference = system2_on_holdout(ctx, spec, holdout)
    choice = router.choose(held_conf, held_answers, fallback, reference, max_agreement_loss=r.max_agreement_loss,
                           budget=r.budget)
    by = {(row.system, row.id): row for row in rows}
    distilled, system2 = ([by[system, ex.id] for ex in test] for system in (f"distill_{spec.key}", spec.method))
    curve = router.curve(test_conf, [d.correct for d in distilled], [d.tokens + c for d, c in zip(distilled, cost)],
                         [s.correct for s in system2], [s.tokens for s in system2])
    rundir.write_atomic(ctx.dir / "evaluate" / f"route_{spec.key}.json", json.dumps({
        "entry": spec.key, "system": f"route_{spec.key}", "distilled": f"distill_{spec.key}", "system2": spec.method,
        "confidence": r.confidence, "holdout": len(holdout), "with_reference": sum(x is not None for x in reference),
        "choice": finite(asdict(choice)), "curve": [finite(asdict(p)) for p in curve]}, indent=1))
    return [routed_row(d, s, c, extra, choice.threshold, spec)
            for d, s, c, extra in zip(distilled, system2, test_conf, cost)]


def system2_on_holdout(ctx: RunContext, spec: DistillSpec, holdout: list[Example]) -> tuple[list, list]:
    """System 2's greedy answer on each held-out input (what the router falls back to) and its majority answer
    over ``generation.num_samples`` samples (None: no majority), the reference the threshold is chosen against."""
    m, chunk = ctx.method(spec.method), ctx.cfg.generation.chunk_sequences
    folder = ctx.dir / "evaluate" / f"route_{spec.key}"
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=ctx.cfg.evaluate.max_tokens)
    firsts = run_method(m, holdout, ctx.backend(), greedy, folder / f"holdout_{spec.method}.jsonl", chunk,
                        desc=f"route: {spec.method} greedy, holdout")
    sampled = replace(ctx.sampling(), n=spec.samples(ctx.cfg.generation))
    samples = run_method(m, holdout, ctx.backend(), sampled, folder / f"holdout_{spec.method}_samples.jsonl", chunk,
                         desc=f"route: {spec.method} ×{sampled.n}, holdout")
    return ([norm(firsts[ex.id][0].answer) for ex in holdout],
            [majority_vote([t.answer for t in samples[ex.id]])[0] for ex in holdout])


def routed_row(distilled: EvalRow, system2: EvalRow, confidence: float, confidence_tokens: int, threshold: float,
               spec: DistillSpec) -> EvalRow:
    """One test item as the router answers it: the distilled row, or System 2's where confidence is below the
    threshold, at the cost of both (the distilled model always answers first) and of the confidence itself."""
    fell = confidence < threshold
    answered = system2 if fell else distilled
    return replace(answered, system=f"route_{spec.key}", label=f"Router: {distilled.label} → {system2.label}",
                   kind="route", source=spec.method, model=distilled.model,
                   steps=distilled.steps + (system2.steps if fell else []),
                   tokens=distilled.tokens + confidence_tokens + (system2.tokens if fell else 0), samples=[],
                   sample_tokens=[], votes=[],
                   system2_answer=None, agrees_with_system2=None, confidence=confidence, routed=fell)


def finite(values: dict) -> dict:
    """JSON has no infinity: the threshold that sends every input to System 2 is written as null."""
    return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in values.items()}

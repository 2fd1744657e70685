"""Stage 1, generate: sample System 2 traces on the unlabeled train inputs (arXiv 2407.06023 Sec. 3, step 2).

Each distill entry's method draws ``generation.num_samples`` traces per input (the most any entry of that
method asks for: an entry distilled from fewer uses the first ones, sample j being seeded alone), appended
to ``generate/<method>.jsonl`` chunk by chunk, so a cut-off run resumes where it stopped. With
``generation.adaptive`` an input stops once its vote is settled (``adaptive.StopRule``).
"""

from __future__ import annotations

from dataclasses import replace

from sys2distill.adaptive import StopRule
from sys2distill.config import RunConfig
from sys2distill.errors import UserError
from sys2distill.generation import run_method
from sys2distill.stages.context import Reads, RunContext

SAMPLING = ("generation.temperature", "generation.top_p", "generation.max_tokens", "generation.seed")
AMOUNT = ("generation.num_samples", "generation.adaptive", "generation.adaptive_min_samples",
          "generation.adaptive_confidence", "generation.adaptive_rule")
# Building and prompting a method (a chain's steps included), and running a backend: only the dtype
# changes what a model generates.
MODEL = ("model", "task", "backend.dtype", "prompts", "method_options", "chains")
ENGINE = ("backend",)
# Adaptive stopping on the majority filter's decision reads the filter's settings (StopRule).
STOP_ON_FILTER = ("filter.name", "filter.enabled", "filter.min_agreement")

READS = Reads(keys=(*MODEL, *SAMPLING), extends=("distill.methods", *AMOUNT),
              neutral=(*ENGINE, "generation.chunk_sequences"), writes=("generate", "data/train.jsonl"))


def reads(cfg: RunConfig) -> Reads:
    """``READS``, with the filter keys generation reads when it stops on the filter's decision."""
    g = cfg.generation
    if g.adaptive and g.adaptive_rule in ("exact", "predictive"):
        return replace(READS, extends=READS.extends + STOP_ON_FILTER)
    return READS


def num_samples(ctx: RunContext, method: str) -> int:
    """Samples generated per input for ``method``: the most any of its distill entries needs."""
    g = ctx.cfg.generation
    return max(s.samples(g) for s in ctx.cfg.distill.specs if s.method == method)


def stop_rule(ctx: RunContext, method: str) -> StopRule:
    g, n = ctx.cfg.generation, num_samples(ctx, method)
    if not g.adaptive:
        return StopRule.fixed(n)
    if g.adaptive_rule in ("exact", "predictive"):
        f = ctx.cfg.filter
        if f.name != "majority" or not f.enabled:
            raise UserError(f"generation.adaptive_rule={g.adaptive_rule} needs the majority filter (filter.name=majority, "
                            "enabled): it stops on that filter's decision; use adaptive_rule=beta otherwise")
        return StopRule(n, g.adaptive_min_samples, g.adaptive_confidence, rule=g.adaptive_rule, threshold=f.min_agreement)
    return StopRule(n, g.adaptive_min_samples, g.adaptive_confidence)


def run(ctx: RunContext) -> None:
    train = ctx.examples("train")
    for name in dict.fromkeys(s.method for s in ctx.cfg.distill.specs):
        n = num_samples(ctx, name)
        run_method(ctx.method(name), train, ctx.backend(), replace(ctx.sampling(), n=n),
                   ctx.dir / "generate" / f"{name}.jsonl", ctx.cfg.generation.chunk_sequences,
                   desc=f"generate {name} ×{n}{' (adaptive)' if ctx.cfg.generation.adaptive else ''}",
                   stop=stop_rule(ctx, name))

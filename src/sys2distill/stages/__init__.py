"""The pipeline's stages (arXiv 2407.06023 Sec. 3), one module each, run in this order over one run folder:

generate  System 2 traces on unlabeled train inputs  → generate/<method>.jsonl
filter    consistency filter + distillation dataset   → filter/<entry>.jsonl, distill/<entry>.jsonl
train     fine-tune the same model on each dataset    → train/<entry>/ (DONE.json when complete)
evaluate  System 1, System 2 and distilled on test    → evaluate/*.jsonl, evaluate/rows.jsonl
report    the paper-style table                       → results.json, results.md

Each module declares ``READS`` (``context.Reads``: the config keys its outputs depend on and the paths it
writes) and ``run(ctx)``; ``pipeline.Pipeline`` decides which to run, resume, repair or refuse.
"""

from sys2distill.backends.build import resolved_dtype
from sys2distill.config import RunConfig
from sys2distill.configview import pick
from sys2distill.stages import evaluate, filter, generate, report, train
from sys2distill.stages.context import Reads, RunContext

STAGES = ("generate", "filter", "train", "evaluate", "report")
REGISTRY = {"generate": generate, "filter": filter, "train": train, "evaluate": evaluate, "report": report}
STAGE_READS = {name: module.READS for name, module in REGISTRY.items()}


def stage_reads(stage: str, cfg: RunConfig) -> Reads:
    """What ``stage`` reads and writes with this config (generation reads the filter when it stops on it)."""
    return generate.reads(cfg) if stage == "generate" else STAGE_READS[stage]


def fingerprint(cfg: RunConfig, stage: str) -> dict:
    """The values of the keys ``stage``'s outputs depend on: its own, and those of every stage before it."""
    dump, out = cfg.model_dump(), {}
    for s in STAGES[: STAGES.index(stage) + 1]:
        r = stage_reads(s, cfg)
        for k in (*r.keys, *r.extends):
            value = pick(dump, k)
            for n in r.neutral:
                if n.startswith(k + ".") and isinstance(value, dict):  # e.g. train.report_to inside train
                    value = {kk: v for kk, v in value.items() if kk != n[len(k) + 1:]}
            out.setdefault(k, value)
    if out.get("backend.dtype") == "auto":  # what it computes in here: auto runs bf16 on one machine, fp32 on another
        out["backend.dtype"] = resolved_dtype(cfg.backend)
    return out


__all__ = ["REGISTRY", "STAGES", "STAGE_READS", "Reads", "RunContext", "fingerprint", "stage_reads"]

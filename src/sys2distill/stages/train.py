"""Stage 3, train: fine-tune the same model on each entry's System 1 prompt → System 2 answer records
(arXiv 2407.06023 Sec. 3, step 5; ``trainer.train``), and each control model on its records.

A checkpoint is whole once its ``DONE.json`` is written: a folder without one is trained again. An entry
the filter left empty stops the run with one line naming why (``distill.on_empty: error``) or is recorded
as not trained (``SKIPPED.json``).
"""

from __future__ import annotations

import copy
import gc
import json
from collections import Counter

from sys2distill import rundir
from sys2distill.config import DistillSpec
from sys2distill.errors import UserError
from sys2distill.hub import distilled_model_name, write_model_card
from sys2distill.records import FilterDecision, read_records
from sys2distill.stages.context import Reads, RunContext

# on_empty decides whether an entry the filter left empty stops the run or is skipped: no model changes;
# name and report_to only label and route the training metrics.
READS = Reads(keys=("model", "distill.methods", "train"), neutral=("distill.on_empty", "name", "train.report_to"),
              extends=("distill.controls",), writes=("train",))


def nothing_kept(ctx: RunContext, spec: DistillSpec) -> str:
    """Why the filter kept none of an entry's inputs, in counts, and what to change."""
    reasons = Counter(d.reason.split(" ")[0] if d.reason.startswith("agreement") else d.reason
                      for d in read_records(ctx.dir / "filter" / f"{spec.key}.jsonl", FilterDecision))
    f = spec.filter_or(ctx.cfg.filter)
    why = ", ".join(f"{n} {'below filter.min_agreement ' + str(f.min_agreement) if r == 'agreement' else r}"
                    for r, n in reasons.most_common())
    ties = " (ties are common at few samples: raise generation.num_samples)" if reasons.get("tie between top answers") else ""
    return (f"the filter kept none of the {sum(reasons.values())} inputs of distill entry {spec.key!r} ({why}){ties}: "
            f"set distill.on_empty=skip to report it as not trained and finish the other entries, loosen "
            f"filter.min_agreement, or raise task.train_size (filter/{spec.key}.jsonl says why per input)")


def run(ctx: RunContext) -> None:
    from sys2distill.trainer import train

    jobs = [(spec, None) for spec in ctx.cfg.distill.specs]
    jobs += [(spec, control) for spec in ctx.cfg.distill.specs for control in ctx.controls(spec)]
    for spec, control in jobs:
        out = ctx.control_path("train", spec, control) if control else ctx.dir / "train" / spec.key
        data = ctx.control_path("distill", spec, control) if control else ctx.dir / "distill" / f"{spec.key}.jsonl"
        if (out / rundir.DONE).exists() or (control and (ctx.dir / "train" / spec.key / rundir.SKIPPED).exists()):
            continue
        if data.is_file() and not data.read_text(encoding="utf-8").strip():
            if ctx.cfg.distill.on_empty == "error":
                raise UserError(nothing_kept(ctx, spec))
            out.mkdir(parents=True, exist_ok=True)
            (out / rundir.SKIPPED).write_text(json.dumps({"reason": "the filter kept no input"}))
            continue
        loaded = None
        if ctx.loaded_base is not None:  # tests: train a copy of the in-process model
            loaded = (copy.deepcopy(ctx.loaded_base[0]), ctx.loaded_base[1])
        name = f"{spec.key}-{control}" if control else spec.key
        train(data, ctx.cfg.model, out, ctx.cfg.train, loaded=loaded,
              model_name=distilled_model_name(ctx.cfg.model, name), run_name=f"{ctx.cfg.name}/{name}")
        if rundir.is_main_process() and not control:  # under torchrun, rank 0 wrote the checkpoint
            write_model_card(out, run_config=ctx.cfg, train_record=json.loads((out / rundir.DONE).read_text()),
                             results_markdown_table=None)
        gc.collect()

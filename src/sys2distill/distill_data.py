"""Distillation dataset: System 1 prompt → the filtered System 2 final answer
(arXiv 2407.06023 Sec. 3: "discard the intermediate outputs, keep the final answer").
"""

from __future__ import annotations

import random

from sys2distill.methods.base import Method
from sys2distill.records import DistillRecord, Example, FilterDecision, Trace


def build_records(examples: list[Example], traces: dict[str, list[Trace]], decisions: list[FilterDecision],
                  system1: Method, target: str) -> list[DistillRecord]:
    """One record per kept example.

    ``target="final_response"`` uses the last output of the first winning trace (the text a
    System 2 user would read, intermediate steps dropped); ``"answer_only"`` uses the
    extracted answer itself ("rb", "yes"), the shortest possible System 1 output. Inputs whose
    decision has no answer text are skipped.
    """
    by_id = {ex.id: ex for ex in examples}
    records = []
    for d in decisions:
        if not d.kept or not d.answer:
            continue
        # A filter that composes its answer (USC's compose prompt) names no winning trace:
        # the composed answer is then the final response.
        winning = next((t for t in traces[d.example_id] if d.trace_ids and t.id == d.trace_ids[0]), None)
        text = winning.final if target == "final_response" and winning is not None else system1.task.format_answer(d.answer)
        records.append(DistillRecord(
            id=d.example_id,
            prompt=system1.prompt("answer", by_id[d.example_id]),
            completion=[{"role": "assistant", "content": text}],
            metadata={"method": traces[d.example_id][0].method, "answer": d.answer, "votes": d.votes,
                      "agreement": d.agreement, "source_trace_ids": d.trace_ids, "target": target},
        ))
    return records


def control_records(records: list[DistillRecord], control: str, *, seed: int,
                    gold: dict[str, Example] | None = None, task=None) -> list[DistillRecord]:
    """The same inputs as ``records`` with the targets of a control model (config ``distill.controls``).

    ``shuffled``: the kept targets permuted across the inputs (seeded by ``seed``): the answers' format and
    their distribution without their link to the input, so a model trained on it shows what format alone
    buys. ``gold``: each input's train label (``gold``: the labelled train split; ``task`` formats it as the
    answer alone, whatever ``distill.target``), the ceiling of SFT on these inputs; the one place train labels
    reach a training set.
    """
    if control == "shuffled":
        targets = [r.completion for r in records]
        random.Random(f"shuffled-{seed}").shuffle(targets)
    elif control == "gold":
        targets = [[{"role": "assistant", "content": task.format_answer(gold[r.id].answer)}] for r in records]
    else:
        raise ValueError(f"unknown control {control!r}")
    # The vote's own fields (answer, votes, agreement, traces) would contradict these targets: left out.
    return [DistillRecord(id=r.id, prompt=r.prompt, completion=t,
                          metadata={"method": r.metadata.get("method"), "control": control,
                                    "target": "answer_only" if control == "gold" else r.metadata.get("target"),
                                    "reads_train_labels": control == "gold"})
            for r, t in zip(records, targets)]

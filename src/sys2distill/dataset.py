"""Distillation dataset: System 1 prompt → the filtered System 2 final answer
(arXiv 2407.06023 Sec. 3: "discard the intermediate outputs, keep the final answer").
"""

from __future__ import annotations

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

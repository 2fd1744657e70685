"""Scoring on the held-out split: one row per (system, test item), the only place answers are scored
(arXiv 2407.06023 Sec. 4: accuracy and #Tokens, the mean generated tokens per answer).

Each ``EvalRow`` is what lm-evaluation-harness's ``--log_samples`` writes — item, gold, every
step's prompt and output, the extracted answer, whether it is correct, tokens — plus the k
sampled answers of majority-vote evaluation (Table 4), order-swap consistency for judges
(Table 3) and, for a distilled model, agreement with System 2's majority answer. Every number in
a report is a function of these rows (``sys2distill.report``); nothing is scored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sys2distill.filters.majority import majority_vote
from sys2distill.records import Example, FilterDecision, Trace, step_dict
from sys2distill.tasks.base import Task, normalize, tally



@dataclass
class EvalRow:
    """One system's answer to one test item, scored."""

    id: str  # test item id
    system: str  # run-folder key: "system1", "rar_2step", "distill_rar_2step"
    label: str  # table name: "Distilled RaR 2-step"
    kind: str  # "system1", "system2", "distilled", "control" (distill.controls: a diagnostic model) or "route"
    method: str  # the method whose prompts produced the text ("system1" for a distilled model)
    source: str | None  # distilled: the run-folder key of the System 2 method it was distilled from
    model: str  # the base model's identity, or the distilled checkpoint's folder
    gold: str | None
    steps: list[dict[str, Any]]  # every generation: name, messages, output, prompt/completion tokens
    final: str  # the text a user reads
    answer: str | None  # extracted by the task's rule; None when it found none
    correct: bool
    tokens: int  # generated tokens, every step counted
    rule: str  # "<task> v<version>": the extraction rule that read ``answer``
    groups: list[str] = field(default_factory=list)  # sub-populations it is scored in (biased/unbiased, eval sets)
    pair_id: str | None = None  # judge tasks: the pair this order belongs to
    pair_inconsistent: bool | None = None  # the verdict names a different response once the pair is swapped
    samples: list[str | None] = field(default_factory=list)  # k-vote: the max(k) sampled answers, in draw order
    sample_tokens: list[int] = field(default_factory=list)  # ... and each sample's generated tokens
    votes: list[dict[str, Any]] = field(default_factory=list)  # per k: {"k", "answer", "correct", "tokens"}
    system2_answer: str | None = None  # distilled: System 2's majority answer on this input (None: no majority)
    agrees_with_system2: bool | None = None  # distilled: answer == system2_answer (None: System 2 has no majority)
    control: str | None = None  # a control model: "shuffled" or "gold" (trained on the train labels)
    confidence: float | None = None  # the router (kind "route"): the distilled answer's confidence (route.confidence)
    routed: bool | None = None  # the router: this input fell back to System 2


@dataclass
class FilterCheck:
    """A kept distillation input scored against its train label, which distillation never reads (the filter's precision)."""

    entry: str  # distill entry key
    id: str
    answer: str | None
    gold: str | None
    correct: bool


def groups_of(example: Example) -> list[str]:
    """Sub-populations an example is scored in: ``metadata["groups"]``, or its one ``group``."""
    return list(example.metadata.get("groups") or ([example.metadata["group"]] if "group" in example.metadata else []))


def vote(answers: list[str | None]) -> tuple[str | None, bool]:
    """Plurality answer of k samples and whether a tie was broken.

    Unlike the filter's ``majority_vote`` (which drops ties), evaluation must answer: a tie
    goes to the tied answer sampled first, so k=2 is never worse than k=1 by construction.
    The first spelling of the winner is returned (its gold check is the task's).
    """
    counts = tally(answers)
    if not counts:
        return None, False
    top = max(counts.values())
    tied = sum(c == top for c in counts.values()) > 1
    return next(a for a in answers if a is not None and counts.get(normalize(a)) == top), tied


def score_rows(task: Task, examples: list[Example], traces: dict[str, list[Trace]], *, system: str, label: str,
               kind: str, method: str, model: str, source: str | None = None, ks: list[int] = (1,),
               samples: dict[str, list[Trace]] | None = None,
               system2_samples: dict[str, list[Trace]] | None = None, control: str | None = None) -> list[EvalRow]:
    """Score the first (greedy) trace of every example, and the k-vote over ``samples`` if given.

    ``samples`` are max(k) traces per example drawn as in generation: sample j is seeded by
    (seed, prompt, j) alone, so the first k are exactly what a run with k samples would draw.
    """
    firsts = {ex.id: traces[ex.id][0] for ex in examples}
    answers = {i: t.answer for i, t in firsts.items()}
    flips = task.inconsistent(examples, answers) or {}
    rows = []
    for ex in examples:
        t = firsts[ex.id]
        row = EvalRow(
            id=ex.id, system=system, label=label, kind=kind, method=method, source=source, model=model,
            gold=ex.answer, steps=[step_dict(s) for s in t.steps], final=t.final, answer=t.answer,
            correct=bool(task.correct(t.answer, ex)), tokens=t.tokens, rule=f"{task.name} v{task.version}",
            groups=groups_of(ex), pair_id=ex.metadata.get("pair_id"), pair_inconsistent=flips.get(ex.metadata.get("pair_id")),
            control=control)
        if samples is not None:
            drawn = samples[ex.id]
            row.samples, row.sample_tokens = [s.answer for s in drawn], [s.tokens for s in drawn]
            for k in ks:
                winner, tied = vote(row.samples[:k])
                row.votes.append({"k": k, "answer": winner, "correct": bool(task.correct(winner, ex)), "tied": tied,
                                  "tokens": sum(row.sample_tokens[:k])})  # every sample's tokens: the cost of voting
        if system2_samples is not None:
            row.system2_answer = majority_vote([s.answer for s in system2_samples[ex.id]])[0]
            if row.system2_answer is not None:
                row.agrees_with_system2 = t.answer is not None and normalize(t.answer) == row.system2_answer
        rows.append(row)
    return rows


def check_filter(task: Task, labeled: list[Example], entry: str, decisions: list[FilterDecision]) -> list[FilterCheck]:
    """Score the filter's kept answers with the train labels (``labeled``: the train split, labels revealed)."""
    gold = {ex.id: ex for ex in labeled}
    return [FilterCheck(entry=entry, id=d.example_id, answer=d.answer, gold=gold[d.example_id].answer,
                        correct=bool(task.correct(d.answer, gold[d.example_id])))
            for d in decisions if d.kept and d.example_id in gold]

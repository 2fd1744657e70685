"""Scoring of System 1, System 2 and distilled systems on the held-out split
(arXiv 2407.06023 Sec. 4: accuracy and #Tokens, the mean generated tokens per answer).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass

from sys2distill.filters.majority import majority_vote
from sys2distill.records import Example, Trace
from sys2distill.tasks.base import Task, normalize


@dataclass
class SystemScore:
    system: str  # run-folder key, e.g. "rar_2step" or "distill_rar_2step"
    label: str  # table name, e.g. "Distilled RaR 2-step"
    kind: str  # "system1", "system2" or "distilled"
    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]  # 95% percentile bootstrap over test items
    mean_tokens: float
    extraction_failures: float  # share of answers the task's rule could not parse
    fidelity: float | None = None  # distilled only: agreement with System 2's majority answer
    by_group: dict[str, float] | None = None  # accuracy per ``Example.metadata["group"]`` / ``["groups"]`` (e.g. biased/unbiased)
    # Paired tasks (a judge's two response orders): share of pairs whose answers disagree, overall and per group.
    inconsistent: float | None = None
    inconsistent_by_group: dict[str, float] | None = None
    by_k: list[dict] | None = None  # majority vote over k sampled answers, one entry per k (``kvote``)

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(values: list[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean: the test sets here have tens to hundreds of items."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def score(task: Task, examples: list[Example], traces: dict[str, list[Trace]], system: str, label: str,
          kind: str) -> SystemScore:
    """Accuracy of the first (greedy) trace per example and its mean generated tokens."""
    firsts = [traces[ex.id][0] for ex in examples]
    correct = [float(task.correct(t.answer, ex)) for ex, t in zip(examples, firsts)]
    groups: dict[str, list[float]] = {}
    for ex, c in zip(examples, correct):
        for g in _groups(ex):
            groups.setdefault(g, []).append(c)
    answers = {ex.id: t.answer for ex, t in zip(examples, firsts)}
    flips = task.inconsistent(examples, answers)
    # Both orders of a pair share their groups, so each group's pairs are the group's examples' pairs.
    flips_by_group = {g: task.inconsistent([ex for ex in examples if g in _groups(ex)], answers) for g in groups} if flips else {}
    return SystemScore(
        system=system, label=label, kind=kind, n=len(examples),
        accuracy=sum(correct) / len(correct),
        accuracy_ci=bootstrap_ci(correct),
        mean_tokens=sum(t.tokens for t in firsts) / len(firsts),
        extraction_failures=sum(t.answer is None for t in firsts) / len(firsts),
        by_group={g: sum(v) / len(v) for g, v in groups.items()} or None,
        inconsistent=sum(flips.values()) / len(flips) if flips else None,
        inconsistent_by_group={g: sum(v.values()) / len(v) for g, v in flips_by_group.items() if v} or None,
    )


def _groups(example: Example) -> list[str]:
    """Sub-populations an example is scored in: ``metadata["groups"]``, or its one ``group``."""
    return list(example.metadata.get("groups") or ([example.metadata["group"]] if "group" in example.metadata else []))


def vote(answers: list[str | None]) -> tuple[str | None, bool]:
    """Plurality answer of k samples and whether a tie was broken.

    Unlike the filter's ``majority_vote`` (which drops ties), evaluation must answer: a tie
    goes to the tied answer sampled first, so k=2 is never worse than k=1 by construction.
    Answers are compared normalized; the first spelling is returned (its gold check is the task's).
    """
    given = [a for a in answers if a is not None and normalize(a)]
    if not given:
        return None, False
    counts = Counter(normalize(a) for a in given)
    top = max(counts.values())
    tied = sum(c == top for c in counts.values()) > 1
    return next(a for a in given if counts[normalize(a)] == top), tied


def kvote(task: Task, examples: list[Example], samples: dict[str, list[Trace]], ks: list[int]) -> list[dict]:
    """Accuracy of the vote over the first k samples, and the tokens all k cost (Table 4's k = 1, 5, 10).

    Sample j is seeded by (seed, prompt, j), so the first k of max(k) samples are exactly
    what a run with k samples would draw.
    """
    out = []
    for k in ks:
        correct, tokens, ties = [], [], 0
        for ex in examples:
            first = samples[ex.id][:k]
            answer, tied = vote([t.answer for t in first])
            correct.append(float(task.correct(answer, ex)))
            tokens.append(sum(t.tokens for t in first))  # every sample's tokens: the cost of voting
            ties += tied
        out.append({"k": k, "accuracy": sum(correct) / len(correct), "accuracy_ci": bootstrap_ci(correct),
                    "mean_tokens": sum(tokens) / len(tokens), "ties": ties / len(examples)})
    return out


def fidelity(distilled: dict[str, list[Trace]], system2_samples: dict[str, list[Trace]]) -> float | None:
    """How often the distilled answer equals System 2's majority answer on the same input.

    Inputs where System 2 has no majority winner are left out; None if none are left.
    """
    hits = []
    for ex_id, samples in system2_samples.items():
        winner, _, _ = majority_vote([t.answer for t in samples])
        if winner is not None:
            answer = distilled[ex_id][0].answer
            hits.append(answer is not None and normalize(answer) == winner)
    return sum(hits) / len(hits) if hits else None

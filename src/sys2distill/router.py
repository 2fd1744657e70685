"""Use the distilled model where it is sure, System 2 where it is not (beyond arXiv 2407.06023).

The paper ends with a distilled System 1 per method; a user still has to decide, per input, whether
to trust it. The router answers with the distilled model and falls back to the System 2 method when
the distilled model's confidence is below a threshold. Confidence needs no label:

- ``logprob``: the probability the distilled model gives its own greedy answer (the product of its
  generated tokens' probabilities, end of text included), from the backend's log-probs;
- ``agreement``: the share of ``k`` sampled System 1 answers of the distilled model that agree with its
  greedy answer (for backends without log-probs, and a check on the first).

The threshold is chosen without labels, on held-out *train* inputs (``route.holdout`` inputs past
``task.train_size``, never distilled on): the lowest threshold (fewest inputs sent to System 2) whose routed
answers agree with System 2's self-consistent (majority) answer within ``route.max_agreement_loss`` of how
often System 2's own greedy answer does, or the highest threshold that sends at most ``route.budget`` of the
inputs to System 2. Everything here is a pure function of per-input values; ``stages/routing.py`` feeds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def probability(logprob: float | None) -> float | None:
    """The probability a log-probability stands for (None stays None)."""
    return None if logprob is None else math.exp(logprob)


def agreement_confidence(greedy: str | None, samples: list[str | None]) -> float:
    """The share of ``samples`` (normalised answers) equal to the greedy answer; 0 when it has none."""
    if greedy is None or not samples:
        return 0.0
    return sum(s == greedy for s in samples) / len(samples)


def thresholds(confidences: list[float]) -> list[float]:
    """Every threshold that routes differently: each distinct confidence, and one above them all (all to System 2).
    An input goes to System 2 when its confidence is below the threshold; the lowest threshold sends none."""
    distinct = sorted(set(confidences))
    return [*distinct, math.inf] if distinct else [math.inf]


@dataclass(frozen=True)
class Choice:
    """The chosen threshold and what it did on the held-out train inputs."""

    threshold: float
    fallback_share: float  # held-out inputs sent to System 2
    agreement: float | None  # routed answers equal to System 2's majority answer (inputs that have one)
    system2_agreement: float | None  # System 2's greedy answer equal to its majority answer, the reference
    rule: str  # how it was chosen, in words


def choose(confidence: list[float], distilled: list[str | None], system2_greedy: list[str | None],
           system2_majority: list[str | None], *, max_agreement_loss: float = 0.02,
           budget: float | None = None) -> Choice:
    """The threshold for held-out inputs' confidences and answers (normalised; None: no answer / no majority).

    With ``budget``: the highest threshold sending at most that share to System 2 (the most System 2 answers the
    budget pays for). Otherwise the lowest threshold whose agreement with System 2's majority answer is within
    ``max_agreement_loss`` of System 2's greedy answer's own (the most tokens saved at that agreement)."""
    n = len(confidence)
    if not (n and len(distilled) == len(system2_greedy) == len(system2_majority) == n):
        raise ValueError("choose needs equally long, non-empty per-input lists")
    has_reference = [m is not None for m in system2_majority]
    reference = sum(has_reference)

    def agree(answers: list[str | None]) -> float | None:
        return (sum(a == m for a, m, h in zip(answers, system2_majority, has_reference) if h) / reference
                if reference else None)

    base = agree(system2_greedy)
    points = []
    for t in thresholds(confidence):
        routed = [d if c >= t else s for c, d, s in zip(confidence, distilled, system2_greedy)]
        points.append((t, sum(c < t for c in confidence) / n, agree(routed)))
    if budget is not None:  # the highest threshold within budget: as many inputs to System 2 as the budget allows
        t, share, rate = max((p for p in points if p[1] <= budget + 1e-12), key=lambda p: p[0])
        return Choice(t, share, rate, base, f"the highest threshold sending at most {budget:.0%} of the inputs to System 2")
    # The lowest threshold within the allowed loss: as few inputs to System 2 as that agreement needs. All to
    # System 2 (the last threshold) always qualifies: its agreement is System 2's own.
    t, share, rate = next(p for p in points if base is None or (p[2] is not None and p[2] >= base - max_agreement_loss - 1e-12))
    return Choice(t, share, rate, base, f"the lowest threshold whose answers agree with System 2's majority answer within "
                                        f"{100 * max_agreement_loss:.0f} points of System 2's greedy answer ({_pct(base)})")


@dataclass(frozen=True)
class Point:
    """The router at one threshold on the test items."""

    threshold: float
    fallback_share: float
    accuracy: float
    mean_tokens: float


def route_items(confidence: list[float], threshold: float, distilled_correct: list[bool], distilled_tokens: list[float],
                system2_correct: list[bool], system2_tokens: list[float]) -> tuple[list[bool], list[float]]:
    """Per test item: whether the routed answer is right, and the tokens it cost (the distilled model's always;
    System 2's too where the input fell back)."""
    correct = [s if c < threshold else d for c, d, s in zip(confidence, distilled_correct, system2_correct)]
    tokens = [dt + (st if c < threshold else 0.0) for c, dt, st in zip(confidence, distilled_tokens, system2_tokens)]
    return correct, tokens


def curve(confidence: list[float], distilled_correct: list[bool], distilled_tokens: list[float],
          system2_correct: list[bool], system2_tokens: list[float]) -> list[Point]:
    """Accuracy and mean tokens per answer of the router at every threshold, from all-distilled to all-System 2."""
    n = len(confidence)
    out = []
    for t in thresholds(confidence):
        correct, tokens = route_items(confidence, t, distilled_correct, distilled_tokens, system2_correct, system2_tokens)
        out.append(Point(t, sum(c < t for c in confidence) / n, sum(correct) / n, sum(tokens) / n))
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"

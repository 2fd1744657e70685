"""Adaptive-Consistency (Aggarwal et al. 2023, "Let's Sample Step by Step"): stop sampling
an input once more samples are unlikely to change its majority answer.

Self-consistency filtering (arXiv 2407.06023 Sec. 3) spends N samples on every input, but an
input whose first samples all agree rarely needs the rest. Stopping rules, any one enough:
- the leader's margin over the runner-up exceeds the samples left (the vote can't flip);
- the Beta rule: with a uniform prior, P(p_leader > p_runner_up | votes) ≥ ``confidence``,
  where the posterior of p_leader / (p_leader + p_runner_up) is Beta(v1 + 1, v2 + 1).

``exact`` mode replaces both with rules that know the majority filter's threshold t: stop when
the leader already has ⌈t·N⌉ votes and can no longer be caught (the filter will keep it, with
this answer), or when no answer can reach ⌈t·N⌉ votes any more (the filter will drop it). The
filter's decision is then the fixed-N decision, by construction; only the savings are smaller.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import ceil, comb

from sys2distill.tasks.base import normalize


def prob_leader_ahead(v1: int, v2: int) -> float:
    """P(X > 1/2) for X ~ Beta(v1 + 1, v2 + 1), exactly.

    For integer a, b: I_x(a, b) = P(Binomial(a + b - 1, x) ≥ a), so P(X > 1/2) =
    P(Binomial(v1 + v2 + 1, 1/2) ≤ v1).
    """
    n = v1 + v2 + 1
    return sum(comb(n, j) for j in range(v1 + 1)) / 2**n


@dataclass(frozen=True)
class StopRule:
    """Decide from the answers drawn so far whether an input needs more samples."""

    max_samples: int  # never more than the fixed-N budget
    min_samples: int = 3  # fewer agreeing samples are too weak a signal for the filter
    confidence: float = 0.95
    exact_threshold: float | None = None  # the majority filter's min_agreement: exact mode (no Beta rule)

    @classmethod
    def fixed(cls, n: int) -> StopRule:
        """Plain self-consistency: exactly ``n`` samples for every input."""
        return cls(max_samples=n, min_samples=n)

    def done(self, answers: list[str | None]) -> bool:
        if len(answers) >= self.max_samples:
            return True
        if len(answers) < self.min_samples:
            return False
        ranked = Counter(normalize(a) for a in answers if a is not None and normalize(a)).most_common(2)
        v1 = ranked[0][1] if ranked else 0
        v2 = ranked[1][1] if len(ranked) > 1 else 0
        left = self.max_samples - len(answers)
        if self.exact_threshold is not None:
            need = ceil(self.exact_threshold * self.max_samples - 1e-9)
            return v1 + left < need or (v1 >= need and v1 - v2 > left)
        if v1 - v2 > left:
            return True
        return v1 > 0 and prob_leader_ahead(v1, v2) >= self.confidence

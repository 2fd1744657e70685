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

``predictive`` mode asks the question the filter cares about: stop once the majority filter's
decision on the samples drawn so far (keep or drop, and which answer) equals its decision on all
N samples with probability ≥ ``confidence``, the remaining samples drawn from the posterior
predictive of a Dirichlet process over answers (a Pólya urn: an answer seen c times comes next
with weight c, an answer not seen yet with weight 1). What it bounds is the chance that the
filter's decision on the prefix differs from the fixed-N decision — the Beta rule bounds a
different event (leader vs runner-up) and so changes filter decisions freely — and unlike
``exact`` it stops when a change is merely unlikely rather than impossible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from math import ceil, comb
from typing import Literal

import numpy as np

from sys2distill.tasks.base import tally


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
    rule: Literal["beta", "exact", "predictive"] = "beta"
    threshold: float = 0.5  # the majority filter's min_agreement (exact and predictive rules)
    simulations: int = 4000  # predictive rule: Pólya-urn completions per check

    @classmethod
    def fixed(cls, n: int) -> StopRule:
        """Plain self-consistency: exactly ``n`` samples for every input."""
        return cls(max_samples=n, min_samples=n)

    def done(self, answers: list[str | None]) -> bool:
        if len(answers) >= self.max_samples:
            return True
        if len(answers) < self.min_samples:
            return False
        ranked = tally(answers).most_common(2)
        v1 = ranked[0][1] if ranked else 0
        v2 = ranked[1][1] if len(ranked) > 1 else 0
        left = self.max_samples - len(answers)
        if self.rule == "exact":
            need = ceil(self.threshold * self.max_samples - 1e-9)
            return v1 + left < need or (v1 >= need and v1 - v2 > left)
        if self.rule == "predictive":
            return self.prob_decision_holds(answers) >= self.confidence
        if v1 - v2 > left:
            return True
        return v1 > 0 and prob_leader_ahead(v1, v2) >= self.confidence

    def prob_decision_holds(self, answers: list[str | None]) -> float:
        """P(the majority filter decides on all ``max_samples`` as it does on ``answers``).

        Monte Carlo over Pólya-urn completions, seeded by the vote counts, so the same votes
        always give the same probability (a resumed run stops where the first one would have).
        """
        from sys2distill.filters.majority import majority_vote

        winner, _, share = majority_vote(answers)
        now = winner if winner is not None and share >= self.threshold else None  # None: the filter drops it
        # Vote categories: each distinct answer, failed extractions (a vote for nobody), new answers.
        votes: dict[str | None, int] = dict(tally(answers))
        if len(answers) > sum(votes.values()):
            votes[None] = len(answers) - sum(votes.values())
        labels = sorted(votes, key=lambda a: (a is None, str(a)))
        counts = np.array([votes[a] for a in labels], dtype=float)
        left = self.max_samples - len(answers)
        key = repr((counts.tolist(), labels.index(None) if None in votes else -1, self.max_samples))
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        m = self.simulations
        # Columns: the seen categories, then one slot per possible new answer (each new answer is distinct).
        draws = np.zeros((m, len(labels) + left))
        draws[:, : len(labels)] = counts
        fresh = np.full(m, len(labels))  # next unused slot per simulation
        rows = np.arange(m)
        for step in range(left):
            weights = np.concatenate([draws[:, : len(labels) + step], np.ones((m, 1))], axis=1)
            cdf = weights.cumsum(1)
            pick = (cdf < rng.random((m, 1)) * cdf[:, -1:]).sum(1)
            is_new = pick == weights.shape[1] - 1
            pick = np.where(is_new, fresh, pick)
            fresh += is_new
            draws[rows, pick] += 1
        # Fixed-N decision per simulation: answer votes exclude the failed-extraction column.
        answer_cols = [i for i, a in enumerate(labels) if a is not None] + list(range(len(labels), draws.shape[1]))
        answers_tally = draws[:, answer_cols]
        # A zero column gives every simulation a runner-up, even one with a single answer column.
        top2 = -np.sort(-np.concatenate([answers_tally, np.zeros((m, 1))], axis=1), axis=1)[:, :2]
        unique = top2[:, 0] > top2[:, 1]
        keeps = unique & (top2[:, 0] / self.max_samples >= self.threshold)
        if now is None:
            return float((~keeps).mean())
        col = answer_cols.index(labels.index(now))
        return float((keeps & (answers_tally[:, col] == top2[:, 0])).mean())

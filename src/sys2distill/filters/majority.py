"""Self-consistency filter: majority vote over N sampled answers (Wang et al. 2023;
arXiv 2407.06023 Sec. 3, used for RaR in Sec. 4.1 with 8 samples).

An input is kept when one extracted answer wins outright and its share of all N samples
reaches ``min_agreement``; failed extractions count as votes for nobody, so a model that
rarely produces a parseable answer cannot reach high agreement.
"""

from __future__ import annotations

from sys2distill.filters import register_filter
from sys2distill.filters.base import Filter
from sys2distill.records import FilterDecision, Trace
from sys2distill.tasks.base import normalize, tally


def majority_vote(answers: list[str | None]) -> tuple[str | None, dict[str, int], float]:
    """Return (winner, votes, winner's share of all answers). No unique winner → None.

    Answers are compared after ``normalize`` (case, punctuation), the same rule scoring uses.
    """
    votes = tally(answers)
    ranked = votes.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None, dict(votes), (ranked[0][1] / len(answers) if ranked else 0.0)
    return ranked[0][0], dict(votes), ranked[0][1] / len(answers)


@register_filter("majority")
class MajorityFilter(Filter):
    def __init__(self, min_agreement: float = 0.5, enabled: bool = True):
        self.min_agreement = min_agreement
        # enabled=False is the paper's "no consistency filter" ablation: every input with
        # a winner is kept, whatever its agreement.
        self.enabled = enabled

    def decide(self, traces: list[Trace]) -> FilterDecision:
        winner, votes, agreement = majority_vote([t.answer for t in traces])
        winners = [t.id for t in traces if t.answer is not None and normalize(t.answer) == winner]
        if winner is None:
            kept, reason = False, "no answer extracted" if not votes else "tie between top answers"
        elif self.enabled and agreement < self.min_agreement:
            kept, reason = False, f"agreement {agreement:.2f} < {self.min_agreement:.2f}"
        else:
            kept, reason = True, f"{votes[winner]}/{len(traces)} samples agree"
        return FilterDecision(example_id=traces[0].example_id, kept=kept, answer=winner, votes=votes,
                              agreement=agreement, reason=reason, trace_ids=winners)

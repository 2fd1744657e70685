"""Consistency under input perturbation (arXiv 2407.06023 Sec. 4.3, used for BSM).

A judge's verdict is kept only if it survives swapping the two responses: the System 2 judge
runs on each pair in both orders (examples ``…-ab`` and ``…-ba``, see
``tasks.pairwise_judge``), and the pair is kept when both orders name the same underlying
response. Both orders are then training examples, each with its own verdict. With N samples
per order, each order's verdict is its majority vote first (``min_agreement`` applies to
each order).
"""

from __future__ import annotations

from sys2distill.filters import register_filter
from sys2distill.filters.base import Filter
from sys2distill.filters.majority import majority_vote
from sys2distill.records import Example, FilterDecision, Trace
from sys2distill.tasks.base import normalize
from sys2distill.tasks.pairwise_judge import preferred, swapped_partners


@register_filter("perturbation_consistency")
class PerturbationConsistencyFilter(Filter):
    def __init__(self, min_agreement: float = 0.5, enabled: bool = True, keep_ties: bool = False):
        self.min_agreement = min_agreement
        # enabled=False: the "no filter" ablation — every order with a verdict is kept.
        self.enabled = enabled
        # Human labels here have no ties, so a verdict of "tie" in both orders teaches nothing useful by default.
        self.keep_ties = keep_ties

    def apply(self, examples: list[Example], traces: dict[str, list[Trace]], backend=None) -> list[FilterDecision]:
        votes = {ex.id: majority_vote([t.answer for t in traces[ex.id]]) for ex in examples}
        partners = swapped_partners(examples)
        out = []
        for ex in examples:
            winner, counts, agreement = votes[ex.id]
            partner = partners[ex.id]
            kept, reason = self._judge(ex, partner, votes)
            out.append(FilterDecision(
                example_id=ex.id, kept=kept, answer=winner, votes=counts, agreement=agreement, reason=reason,
                trace_ids=[t.id for t in traces[ex.id] if t.answer is not None and normalize(t.answer) == winner],
                details={"pair_id": ex.metadata.get("pair_id"), "partner_verdict": votes[partner.id][0] if partner else None}))
        return out

    def _judge(self, ex: Example, partner: Example | None, votes: dict) -> tuple[bool, str]:
        mine, theirs = votes[ex.id][0], votes[partner.id][0] if partner else None
        if mine is None:
            return False, "no verdict in this order"
        if not self.enabled:
            return True, "filter disabled"
        if partner is None:
            return False, "no swapped partner"
        if theirs is None:
            return False, "no verdict in the swapped order"
        low = min(votes[ex.id][2], votes[partner.id][2])
        if low < self.min_agreement:
            return False, f"agreement {low:.2f} < {self.min_agreement:.2f}"
        pick = preferred(ex.metadata["order"], mine)
        if pick != preferred(partner.metadata["order"], theirs):
            return False, "verdict flips when responses swap"
        if pick == "tie" and not self.keep_ties:
            return False, "tie in both orders"
        return True, "same verdict in both orders"

"""Filters judge the N traces of one example and keep or drop it (arXiv 2407.06023 Sec. 3)."""

from __future__ import annotations

from typing import ClassVar

from sys2distill.backends.base import Backend
from sys2distill.records import Example, FilterDecision, Trace


class Filter:
    """Judge each example's N traces: ``apply`` → one ``FilterDecision`` per example.

    Filters that only look at the traces (majority vote) implement ``decide``; filters that
    ask the model again (Universal Self-Consistency, order-swap checks) override ``apply``
    and batch their calls to ``backend`` across examples.
    """

    name: ClassVar[str]
    needs_backend: ClassVar[bool] = False  # True: ``apply`` gets the run's backend (else None)

    def decide(self, traces: list[Trace]) -> FilterDecision:
        raise NotImplementedError

    def apply(self, examples: list[Example], traces: dict[str, list[Trace]], backend: Backend | None) -> list[FilterDecision]:
        return [self.decide(traces[ex.id]) for ex in examples]

"""Filters judge the N traces of one example and keep or drop it (arXiv 2407.06023 Sec. 3)."""

from __future__ import annotations

from typing import ClassVar

from sys2distill.records import FilterDecision, Trace


class Filter:
    """``decide(traces)`` → one ``FilterDecision`` for the traces of a single example."""

    name: ClassVar[str]

    def decide(self, traces: list[Trace]) -> FilterDecision:
        raise NotImplementedError

    def apply(self, traces_by_example: dict[str, list[Trace]]) -> list[FilterDecision]:
        return [self.decide(traces) for traces in traces_by_example.values()]

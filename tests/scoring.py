"""Score traces the way the evaluate and report stages do: rows first, then the table's line."""

from sys2distill.evaluator import score_rows
from sys2distill.report import system_score


def score(task, examples, traces, system, label, kind, **kw):
    return system_score(score_rows(task, examples, traces, system=system, label=label, kind=kind, method=system,
                                   model="m", **kw))

import pytest

from sys2distill.filters import REGISTRY
from sys2distill.filters.majority import MajorityFilter, majority_vote
from sys2distill.records import Step, Trace


def traces(answers, ex="e1"):
    return [Trace(example_id=ex, method="m", sample=j, steps=[Step("answer", [], str(a), 1, 1)], final=str(a),
                  answer=a, tokens=1) for j, a in enumerate(answers)]


@pytest.mark.parametrize("answers, winner, agreement", [
    (["rb", "rb", "RB.", "xy"], "rb", 0.75),  # normalisation merges case and punctuation
    (["rb", "xy"], None, 0.5),  # tie → no winner
    ([None, None, "rb", None], "rb", 0.25),  # failed extractions count against agreement
    ([None, None], None, 0.0),
    (["yes"], "yes", 1.0),
])
def test_majority_vote(answers, winner, agreement):
    w, votes, agr = majority_vote(answers)
    assert w == winner
    assert agr == pytest.approx(agreement)
    assert sum(votes.values()) == sum(a is not None for a in answers)


def test_filter_keeps_consistent_and_records_votes():
    d = MajorityFilter(min_agreement=0.5).decide(traces(["rb"] * 5 + ["xy"] * 3))
    assert d.kept and d.answer == "rb" and d.votes == {"rb": 5, "xy": 3}
    assert d.trace_ids == [f"m/e1/{j}" for j in range(5)]
    assert "5/8" in d.reason


def test_filter_drops_low_agreement_ties_and_unparsed():
    f = MajorityFilter(min_agreement=0.75)
    low = f.decide(traces(["rb"] * 5 + ["xy"] * 3))
    assert not low.kept and low.answer == "rb" and "agreement" in low.reason
    tie = f.decide(traces(["rb", "xy"]))
    assert not tie.kept and tie.reason == "tie between top answers"
    none = f.decide(traces([None, None]))
    assert not none.kept and none.reason == "no answer extracted"


def test_disabled_filter_keeps_any_winner():
    f = MajorityFilter(min_agreement=0.9, enabled=False)
    assert f.decide(traces(["rb", "rb", "a", "b", "c"])).kept
    assert not f.decide(traces(["a", "b"])).kept  # still needs a winner


def test_registry():
    assert REGISTRY["majority"] is MajorityFilter
    assert MajorityFilter.name == "majority"

import pytest

from sys2distill.adaptive import StopRule, prob_leader_ahead


@pytest.mark.parametrize("v1, v2, p", [(0, 0, 0.5), (1, 0, 0.75), (3, 0, 0.9375), (2, 1, 11 / 16), (5, 5, 0.5)])
def test_beta_posterior_probability(v1, v2, p):
    assert prob_leader_ahead(v1, v2) == pytest.approx(p)


def test_stop_rule():
    rule = StopRule(max_samples=8, min_samples=3, confidence=0.95)
    assert not rule.done(["a", "a"])  # below min_samples
    assert not rule.done(["a", "a", "a"])  # 0.9375 < 0.95
    assert rule.done(["a"] * 4)  # 0.969
    assert not rule.done(["a", "b", "a", "b"])
    assert rule.done(["a", "A.", "a", "b", "a", "a", "b"])  # 5 vs 2 with 1 left: the vote can't flip
    assert rule.done([None] * 8)  # the cap
    assert not rule.done([None] * 5)

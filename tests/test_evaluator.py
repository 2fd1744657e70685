import pytest

from sys2distill.evaluator import bootstrap_ci, fidelity, score
from sys2distill.records import Example, Step, Trace
from sys2distill.tasks import REGISTRY


def tr(ex, answer, tokens=3, j=0):
    return Trace(ex, "m", j, [Step("answer", [], str(answer), 1, tokens)], str(answer), answer, tokens)


def test_score_accuracy_tokens_failures_and_groups():
    task = REGISTRY["coin_flip"](train_size=1, test_size=1)
    exs = [Example("a", "q", "yes", {"group": "biased"}), Example("b", "q", "no", {"group": "biased"}),
           Example("c", "q", "yes", {"group": "unbiased"}), Example("d", "q", "no", {"group": "unbiased"})]
    traces = {"a": [tr("a", "Yes", 2)], "b": [tr("b", "yes", 4)], "c": [tr("c", None, 6)], "d": [tr("d", "no", 8)]}
    s = score(task, exs, traces, "system1", "System 1", "system1")
    assert s.accuracy == 0.5 and s.mean_tokens == 5.0 and s.extraction_failures == 0.25 and s.n == 4
    assert s.by_group == {"biased": 0.5, "unbiased": 0.5}
    lo, hi = s.accuracy_ci
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0


def test_bootstrap_ci_shrinks_with_n():
    wide = bootstrap_ci([1.0, 0.0] * 5)
    narrow = bootstrap_ci([1.0, 0.0] * 500)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)


def test_fidelity_skips_inputs_without_a_majority():
    distilled = {"a": [tr("a", "rb")], "b": [tr("b", "xx")], "c": [tr("c", "zz")]}
    system2 = {"a": [tr("a", "RB", j=0), tr("a", "rb", j=1), tr("a", "q", j=2)],
               "b": [tr("b", "yy", j=0), tr("b", "yy", j=1)],
               "c": [tr("c", "p", j=0), tr("c", "q", j=1)]}  # tie: left out
    assert fidelity(distilled, system2) == pytest.approx(0.5)
    assert fidelity({"c": distilled["c"]}, {"c": system2["c"]}) is None

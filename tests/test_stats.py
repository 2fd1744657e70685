"""Each statistic against a textbook value or scipy, including the edges small models hit (0%, 100%)."""

import pytest

from sys2distill.stats import accuracy_interval, items_needed, paired_bootstrap, paired_difference


def test_wilson_interval_holds_at_zero_and_one():
    # Wilson's upper limit at 0/n is z²/(n + z²): 0.1135 for n = 30 (a percentile bootstrap gives 0–0).
    assert accuracy_interval(0, 30) == pytest.approx((0.0, 1.959964**2 / (30 + 1.959964**2)), abs=1e-6)
    lo, hi = accuracy_interval(30, 30)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(1 - 0.11351, abs=1e-4)
    # Newcombe (1998, Stat. Med. 17:857) Table I example: 81/263 → 0.2553 to 0.3662.
    assert accuracy_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)


def _paired(both, a_only, b_only, neither):
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return paired_difference(a, b)


def test_paired_difference_matches_the_textbook():
    # Fagerland, Lydersen & Laake (2017), "Statistical Analysis of Contingency Tables", ch. 8: the paired
    # table [[59, 6], [16, 80]] gives −0.0621 (95% CI −0.1186 to −0.0046) by Newcombe's square-and-add
    # method, and an exact McNemar p of 0.052.
    d = _paired(59, 6, 16, 80)
    assert d.diff == pytest.approx(-0.0621, abs=5e-5)
    assert d.ci == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    assert d.p_value == pytest.approx(0.0525, abs=5e-4) and d.clear_of_zero
    assert (d.a_only, d.b_only, d.n) == (6, 16, 161)


def test_paired_difference_at_the_edges_is_never_degenerate():
    same = _paired(0, 0, 0, 30)  # both systems 0/30: no difference, but no certainty either
    assert same.diff == 0 and same.ci[0] < 0 < same.ci[1] and same.p_value == 1.0 and not same.clear_of_zero
    all_b = _paired(0, 0, 30, 0)  # B right everywhere, A nowhere
    assert all_b.diff == -1 and -1 <= all_b.ci[0] < all_b.ci[1] < -0.8 and all_b.p_value < 1e-8
    with pytest.raises(ValueError):
        paired_difference([True], [True, False])


def test_items_needed_grows_as_the_gap_shrinks():
    small, large = _paired(10, 6, 4, 30), _paired(10, 12, 2, 26)
    assert not small.clear_of_zero and items_needed(small) > small.n
    assert items_needed(large) < items_needed(small)
    assert items_needed(_paired(5, 3, 3, 9)) is None  # no difference: no sample size makes it clear


def test_paired_bootstrap_resamples_jointly_and_refuses_undefined_statistics():
    x, y = [1.0, 2.0, 3.0, 4.0] * 10, [2.0, 4.0, 6.0, 8.0] * 10
    assert paired_bootstrap(lambda a, b: b / a, [x, y]) == pytest.approx((2.0, 2.0))  # paired: the ratio never varies
    assert paired_bootstrap(lambda a, b: b / a, [x, y], seed=1) == paired_bootstrap(lambda a, b: b / a, [x, y], seed=1)
    assert paired_bootstrap(lambda a: None, [x]) is None

"""The statistics every report number rests on, one implementation each.

Test sets here have tens to hundreds of items, and small models often score 0% or 100%, so
every interval must stay honest at the edges (a percentile bootstrap of 0/30 is "0–0"):

- ``accuracy_interval``: Wilson score interval of one proportion (Wilson 1927).
- ``paired_difference``: two systems answering the same items — the difference in accuracy with
  Newcombe's hybrid score interval for paired proportions (Newcombe 1998, Stat. Med. 17:2635,
  method 10) and the exact McNemar test (a two-sided binomial test on the discordant items).
- ``items_needed``: how many paired items would make an observed difference clear of zero.
- ``paired_bootstrap``: percentile interval of a statistic of aligned per-item lists, resampled
  jointly (for ratios such as gap recovered and token ratio, which have no closed form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def accuracy_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes in ``n`` trials (0/30 → 0–11.4%, not 0–0)."""
    if n == 0:
        return (0.0, 1.0)
    ci = stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of system A minus system B on the same ``n`` items."""

    n: int
    a: float  # accuracy of A
    b: float  # accuracy of B
    diff: float  # a - b
    ci: tuple[float, float]  # 95% Newcombe paired score interval of the difference
    a_only: int  # items A gets right and B wrong
    b_only: int  # items B gets right and A wrong
    p_value: float  # exact McNemar test of "A and B are equally accurate"

    @property
    def clear_of_zero(self) -> bool:
        return self.ci[0] > 0 or self.ci[1] < 0


def paired_difference(a: list[bool], b: list[bool]) -> PairedDifference:
    """Compare two systems' per-item correctness on the same items (aligned lists)."""
    n = len(a)
    if n == 0 or len(b) != n:
        raise ValueError("paired_difference needs two equally long, non-empty lists")
    both = sum(x and y for x, y in zip(a, b))
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    neither = n - both - a_only - b_only
    pa, pb = (both + a_only) / n, (both + b_only) / n
    (la, ua), (lb, ub) = accuracy_interval(both + a_only, n), accuracy_interval(both + b_only, n)
    # Correlation of the two systems' successes, with Newcombe's continuity adjustment of the
    # cross-product (only a positive excess over n/2 counts), 0 when a margin is empty.
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    adjusted = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = adjusted / math.sqrt(margins) if margins else 0.0
    below = math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    above = math.sqrt(max(0.0, (ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2))
    discordant = a_only + b_only
    p = float(stats.binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    return PairedDifference(n=n, a=pa, b=pb, diff=pa - pb, ci=(max(-1.0, pa - pb - below), min(1.0, pa - pb + above)),
                            a_only=a_only, b_only=b_only, p_value=p)


def items_needed(d: PairedDifference, power: float = 0.8) -> int | None:
    """Paired items for a 95% interval of the difference to exclude zero with probability ``power``,
    if the observed difference and rate of disagreement held; None when nothing differs."""
    if d.diff == 0:
        return None
    variance = (d.a_only + d.b_only) / d.n - d.diff**2  # per-item variance of (a_i - b_i)
    z = Z95 + stats.norm.ppf(power)
    return max(d.n, math.ceil(z**2 * variance / d.diff**2))


def paired_bootstrap(fn, columns: list[list[float]], resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of ``fn(*column_means)`` over items resampled jointly from aligned columns.

    ``fn`` returns None where the statistic is undefined for a resample (e.g. a ratio over a zero
    gap); those resamples are left out, and the interval is None if more than 5% of them are.
    """
    data = np.asarray(columns, dtype=float)  # (columns, items)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.shape[1], size=(resamples, data.shape[1]))
    means = data[:, idx].mean(axis=2)  # (columns, resamples)
    values = [v for v in (fn(*means[:, r]) for r in range(resamples)) if v is not None]
    if len(values) < 0.95 * resamples:
        return None
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return (float(lo), float(hi))

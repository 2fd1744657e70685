"""The distillability verdict: did distillation keep System 2's gain at System 1's cost?

arXiv 2407.06023 answers this per method in words (Sec. 4–5: RaR, S2A and BSM distil, CoT on
GSM8K does not, Table 4). Here every report says it in numbers, from the per-item rows of one
test split (the three systems answered the same items, so every comparison is paired):

  System 2 gap   = System 2 − System 1 accuracy, with its paired interval and McNemar p
  gap recovered  = (distilled − System 1) / (System 2 − System 1)
  token ratio    = distilled #tokens / System 2 #tokens

Gap recovered is a ratio over the gap, so it is reported only when the gap's 95% interval is
clear of zero; otherwise the verdict says the share cannot be measured on this many items and
how many paired items would make the observed gap clear.

Beside System 1 the distilled model is compared, paired, with every other baseline the run has: a
"Distill System 1" model (the paper's baseline: System 1's own voted answers) and the control models
of ``distill.controls`` (the same SFT on shuffled kept answers, and on the gold answers, whose accuracy
is the ceiling the verdict measures the distilled model against). A gain is only a gain beside them.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from sys2distill.stats import PairedDifference, items_needed, paired_bootstrap, paired_difference


class Comparison(BaseModel):
    """System A against System B on the same items (``stats.paired_difference``)."""

    system: str
    baseline: str
    n: int
    diff: float
    diff_ci: tuple[float, float]
    wins: int  # items A gets right and B wrong
    losses: int  # items B gets right and A wrong
    p_value: float  # exact McNemar

    @classmethod
    def of(cls, system: str, baseline: str, d: PairedDifference) -> Comparison:
        return cls(system=system, baseline=baseline, n=d.n, diff=d.diff, diff_ci=d.ci, wins=d.a_only, losses=d.b_only,
                   p_value=d.p_value)

    @property
    def clear_of_zero(self) -> bool:
        return self.diff_ci[0] > 0 or self.diff_ci[1] < 0

    def points(self) -> str:
        lo, hi = self.diff_ci
        return f"{100 * self.diff:+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, McNemar p = {self.p_value:.2g})"


class Verdict(BaseModel):
    distilled: str  # labels
    system2: str
    system1: str
    n: int
    accuracy: dict[str, float]  # label → accuracy on these items
    gap: Comparison  # System 2 vs System 1
    distilled_gain: Comparison  # distilled vs System 1
    recovered: float | None  # only when the gap is clear of zero
    recovered_ci: tuple[float, float] | None
    items_needed: int | None  # paired items that would make the observed gap clear of zero (80% power)
    token_ratio: float | None
    token_ratio_ci: tuple[float, float] | None
    system2_tokens: float
    distilled_tokens: float
    # (answer, share of the test items the distilled model gives it, accuracy of always giving it): set when
    # one answer covers at least ONE_ANSWER_SHARE of the items, a model that learnt a label, not a skill
    one_answer: tuple[str, float, float] | None = None
    # (the commonest gold answer, accuracy of always giving it): set, when ``one_answer`` is not, where that
    # constant scores more than the distilled model — answers carrying no more than their format
    below_constant: tuple[str, float] | None = None
    # (the distilled model's commonest answer, its share, the commonest gold answer's share): set, when
    # ``one_answer`` is not, where the first share exceeds the last by more than SKEW_POINTS
    skewed: tuple[str, float, float] | None = None
    # Distilled vs each other baseline of the run (other System 1 prompts, Distill System 1, controls)
    against: list[Comparison] = []
    # (label, accuracy) of the gold-answer control: SFT on the kept inputs with their train labels
    ceiling: tuple[str, float] | None = None
    sentence: str


ONE_ANSWER_SHARE = 0.9
SKEW_POINTS = 0.10  # a distilled model's commonest answer may be this much commoner than gold's commonest


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def verdict(s1: list[bool], s2: list[bool], d: list[bool], s2_tokens: list[float], d_tokens: list[float], *,
            labels: tuple[str, str, str], d_answers: list[str | None] | None = None,
            golds: list[str | None] | None = None, others: dict[str, list[bool]] | None = None,
            ceiling: str | None = None) -> Verdict:
    """``labels`` = (distilled, System 2, System 1); the lists are aligned on the same test items.

    ``d_answers`` and ``golds`` (normalised) let the sentence say when the distilled model gives one
    answer to nearly every item, and what always giving that answer would score; ``golds`` alone, when
    always giving the commonest gold answer would score more than the distilled model. ``others`` maps
    the label of each other baseline to its per-item correctness; ``ceiling`` names the one among them
    trained on the gold answers.
    """
    n = len(s1)
    if not (n and len(s2) == len(d) == len(s2_tokens) == len(d_tokens) == n):
        raise ValueError("verdict needs equally long, non-empty per-item lists")
    distilled, system2, system1 = labels
    gap = Comparison.of(system2, system1, paired_difference(s2, s1))
    gain = Comparison.of(distilled, system1, paired_difference(d, s1))
    recovered = recovered_ci = needed = None
    if gap.diff > 0 and gap.clear_of_zero:
        recovered = gain.diff / gap.diff
        recovered_ci = paired_bootstrap(lambda a1, a2, ad: (ad - a1) / (a2 - a1) if a2 > a1 else None,
                                        [list(map(float, s1)), list(map(float, s2)), list(map(float, d))])
    elif gap.diff > 0:
        needed = items_needed(paired_difference(s2, s1))
    t2, td = sum(s2_tokens) / n, sum(d_tokens) / n
    ratio = td / t2 if t2 > 0 else None
    ratio_ci = paired_bootstrap(lambda a, b: b / a if a > 0 else None, [s2_tokens, d_tokens]) if t2 > 0 else None
    accuracy = {system1: sum(s1) / n, system2: sum(s2) / n, distilled: sum(d) / n}
    one_answer = below_constant = skewed = None
    if d_answers and golds:
        answer, count = Counter(d_answers).most_common(1)[0]
        if answer is not None and count >= ONE_ANSWER_SHARE * n:
            one_answer = (answer, count / n, sum(g == answer for g in golds) / n)
    if not one_answer and any(golds or ()):
        gold, count = Counter(g for g in golds if g).most_common(1)[0]
        if count / n > accuracy[distilled]:
            below_constant = (gold, count / n)
        answered = Counter(a for a in d_answers or () if a is not None).most_common(1)
        if answered and answered[0][1] / n > count / n + SKEW_POINTS:
            skewed = (answered[0][0], answered[0][1] / n, count / n)
    if len({len(c) for c in (others or {}).values()} - {n}):
        raise ValueError("verdict needs every baseline scored on the same items")
    against = [Comparison.of(distilled, label, paired_difference(d, c)) for label, c in (others or {}).items()]
    v = Verdict(distilled=distilled, system2=system2, system1=system1, n=n, accuracy=accuracy, gap=gap,
                distilled_gain=gain, recovered=recovered, recovered_ci=recovered_ci, items_needed=needed,
                token_ratio=ratio, token_ratio_ci=ratio_ci, system2_tokens=t2, distilled_tokens=td,
                one_answer=one_answer, below_constant=below_constant, skewed=skewed, against=against,
                ceiling=(ceiling, sum(others[ceiling]) / n) if ceiling else None, sentence="")
    v.sentence = sentence(v)
    return v


def sentence(v: Verdict) -> str:
    """The verdict in plain words, numbers included."""
    accs = ", ".join(f"{k} {100 * a:.1f}%" for k, a in v.accuracy.items())
    if v.token_ratio is None:
        cost = f"with {v.system2} generating no tokens"
    else:
        lo, hi = v.token_ratio_ci or (float("nan"), float("nan"))
        cost = (f"at {_pct(v.token_ratio)} ({_pct(lo)}–{_pct(hi)}) of {v.system2}'s tokens "
                f"({v.distilled_tokens:.1f} vs {v.system2_tokens:.1f} per answer)")
    gain = f"{v.distilled} vs {v.system1}: {v.distilled_gain.points()}"
    caveat = ""
    if v.one_answer:
        answer, share, constant = v.one_answer
        caveat = (f" Caution: {v.distilled} answers “{answer}” to {_pct(share)} of the items, and always answering "
                  f"“{answer}” scores {100 * constant:.1f}%: it learnt the filter's commonest answer, not the method.")
    elif v.below_constant:
        gold, constant = v.below_constant
        caveat = (f" Caution: always answering “{gold}” (the commonest gold answer) scores {100 * constant:.1f}%, more "
                  f"than {v.distilled}'s {100 * v.accuracy[v.distilled]:.1f}%.")
    if v.skewed:
        answer, share, gold_share = v.skewed
        caveat += (f" Caution: {v.distilled} answers “{answer}” to {_pct(share)} of the items, where the commonest gold "
                   f"answer covers {_pct(gold_share)}: part of what it learnt is that answer, not the method.")
    # The gold control is the ceiling, said as a share below, not a baseline to beat.
    baselines = "".join(f" Against {c.baseline}: {c.points()}." for c in v.against if c.baseline != (v.ceiling or ("",))[0])
    if v.ceiling:
        label, acc = v.ceiling
        share = f"{_pct(v.accuracy[v.distilled] / acc)} of it" if acc > 0 else "the ceiling scores nothing"
        baselines += (f" The gold-label ceiling ({label}, trained on these inputs' train labels) is {100 * acc:.1f}%: "
                      f"{v.distilled} reaches {share}.")
    if v.recovered is not None:
        interval = (f"95% CI {_pct(v.recovered_ci[0])}–{_pct(v.recovered_ci[1])}" if v.recovered_ci
                    else "interval undefined: the gap vanishes in too many resamples")
        return (f"{v.distilled} recovers {_pct(v.recovered)} ({interval}) of {v.system2}'s gain over {v.system1} "
                f"({v.gap.points()}) {cost}, on {v.n} test items ({accs})." + baselines + caveat)
    if v.gap.diff <= 0:
        return (f"{v.system2} is not more accurate than {v.system1} on these {v.n} test items ({v.gap.points()}), so "
                f"there is no System 2 gain to distil; {gain}, {cost}." + baselines + caveat)
    return (f"{v.system2}'s gain over {v.system1} ({v.gap.points()}) is not clear of zero on {v.n} test items, so the "
            f"share of it that distillation keeps cannot be measured here (about {v.items_needed} paired items would "
            f"be needed at this gap); {gain}, {cost}." + baselines + caveat)

"""The distillability verdict: did distillation keep System 2's gain at System 1's cost?

arXiv 2407.06023 answers this per method in words (Sec. 4–5: RaR, S2A and BSM distil, CoT on
GSM8K does not, Table 4). Here every report says it in numbers, for every distilled model:

  gap recovered = (distilled − System 1) / (System 2 − System 1)   (accuracy)
  token ratio   = distilled #tokens / System 2 #tokens

with 95% percentile bootstrap intervals over test items, resampled jointly (the three systems
answered the same items, so their errors are paired). When System 2 is not more accurate than
System 1 the gap is undefined: we say so instead of dividing by zero or by a negative gap.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sys2distill.records import Trace, read_records

if TYPE_CHECKING:
    from sys2distill.pipeline import Pipeline


def _ci(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    values = sorted(values)
    return values[int(0.025 * len(values))], values[max(0, int(0.975 * len(values)) - 1)]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def verdict(s1: list[float], s2: list[float], d: list[float], s2_tokens: list[float], d_tokens: list[float],
            resamples: int = 1000, seed: int = 0) -> dict:
    """Point estimates and intervals from per-item correctness (0/1) and generated tokens.

    All lists are aligned on the same test items. ``recovered`` is None when System 2 ≤ System 1;
    its interval uses only the resamples where System 2 > System 1 (``undefined_share`` says how
    many did not), since a ratio over a gap that is zero or negative means nothing.
    """
    n = len(s1)
    if not (n and len(s2) == len(d) == len(s2_tokens) == len(d_tokens) == n):
        raise ValueError("verdict needs equally long, non-empty per-item lists")
    gap = _mean(s2) - _mean(s1)
    tok2 = _mean(s2_tokens)
    rng = random.Random(seed)
    gaps, recovered, ratios = [], [], []
    for _ in range(resamples):
        idx = rng.choices(range(n), k=n)
        a1, a2, ad = (sum(xs[i] for i in idx) / n for xs in (s1, s2, d))
        gaps.append(a2 - a1)
        if a2 > a1:
            recovered.append((ad - a1) / (a2 - a1))
        t2 = sum(s2_tokens[i] for i in idx)
        if t2 > 0:
            ratios.append(sum(d_tokens[i] for i in idx) / t2)
    return {
        "n": n, "system1": _mean(s1), "system2": _mean(s2), "distilled": _mean(d),
        "gap": gap, "gap_ci": _ci(gaps),
        "recovered": (_mean(d) - _mean(s1)) / gap if gap > 0 else None,
        "recovered_ci": _ci(recovered) if gap > 0 else None,
        "undefined_share": 1 - len(recovered) / resamples,
        "token_ratio": _mean(d_tokens) / tok2 if tok2 > 0 else None,
        "token_ratio_ci": _ci(ratios) if tok2 > 0 else None,
        "system2_tokens": tok2, "distilled_tokens": _mean(d_tokens),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def sentence(v: dict, distilled: str, system2: str, system1: str = "System 1") -> str:
    """The verdict as one plain-language line, numbers included."""
    if v["token_ratio"] is None:
        cost = f"with {system2} generating no tokens"
    else:
        lo, hi = v["token_ratio_ci"]
        cost = (f"at {_pct(v['token_ratio'])} ({_pct(lo)}–{_pct(hi)}) of {system2}'s tokens "
                f"({v['distilled_tokens']:.1f} vs {v['system2_tokens']:.1f} per answer)")
    accs = f"{system2} {100 * v['system2']:.1f}%, {system1} {100 * v['system1']:.1f}%, {distilled} {100 * v['distilled']:.1f}%"
    if v["recovered"] is None:
        return (f"{system2} is not more accurate than {system1} on these {v['n']} items ({accs}), so there is no "
                f"System 2 gain to distil and the gap recovered is undefined; {distilled} runs {cost}.")
    lo, hi = v["recovered_ci"]
    line = (f"{distilled} recovers {_pct(v['recovered'])} (95% CI {_pct(lo)}–{_pct(hi)}) of the System 2 − System 1 "
            f"accuracy gap ({accs}) {cost}.")
    glo, ghi = v["gap_ci"]
    if glo <= 0:  # the gain being distilled may itself be noise: say so next to the number
        line += (f" Caution: the gap itself ({100 * v['gap']:+.1f} points, CI {100 * glo:+.1f} to {100 * ghi:+.1f}) "
                 f"is not clearly above zero on {v['n']} items.")
    return line


def run_verdicts(p: Pipeline, scores: list[dict]) -> list[dict]:
    """One verdict per distilled model of a run, from its greedy evaluation traces.

    A model distilled from method M is compared with M itself as System 2; "Distill System 1"
    has no System 2 and gets none. A missing System 1 or M evaluation is reported, not guessed.
    """
    by_system = {s["system"]: s for s in scores}
    test = p.examples("test")

    def per_item(system: str) -> tuple[list[float], list[float]]:
        firsts = {t.example_id: t for t in read_records(p.dir / "evaluate" / f"{system}.jsonl", Trace) if t.sample == 0}
        return ([float(p.task.correct(firsts[ex.id].answer, ex)) for ex in test],
                [float(firsts[ex.id].tokens) for ex in test])

    out = []
    for spec in p.cfg.distill.specs:
        d = by_system.get(f"distill_{spec.key}")
        if spec.method == "system1" or d is None:
            continue
        missing = [m for m in ("system1", spec.method) if m not in by_system]
        if missing:
            out.append({"distilled_label": d["label"], "sentence": f"No verdict for {d['label']}: add "
                        f"{' and '.join(missing)} to evaluate.systems to compare it with System 1 and System 2."})
            continue
        (c1, _), (c2, t2), (cd, td) = per_item("system1"), per_item(spec.method), per_item(d["system"])
        v = verdict(c1, c2, cd, t2, td)
        s2 = by_system[spec.method]["label"]
        out.append({"distilled_label": d["label"], "system2_label": s2, **v, "sentence": sentence(v, d["label"], s2)})
    return out

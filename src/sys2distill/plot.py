"""Accuracy against generated tokens: the trade-off arXiv 2407.06023 reports in words and tables
(Tables 1–4: accuracy and #Tokens side by side). One point per system from the greedy table,
and one per (system, k) when majority-vote evaluation ran, joined by a line per system.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

_MARKERS = {"system1": "s", "system2": "o", "distilled": "D", "control": "x"}


def plot_accuracy_vs_tokens(scores: list[dict], path: Path, title: str = "", metric: str = "accuracy") -> Path:
    """Write the PNG and return its path. ``scores`` are ``SystemScore`` dicts."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, s in enumerate(scores):
        color = f"C{i % 10}"
        ax.scatter(max(s["mean_tokens"], 0.5), 100 * s["accuracy"], marker=_MARKERS.get(s["kind"], "o"),
                   color=color, s=60, label=f"{s['label']} (greedy)", zorder=3)
        if s.get("by_k"):
            xs = [max(e["mean_tokens"], 0.5) for e in s["by_k"]]
            ys = [100 * e["accuracy"] for e in s["by_k"]]
            ax.plot(xs, ys, "--", marker=_MARKERS.get(s["kind"], "o"), color=color, alpha=0.6, markersize=4)
            for x, y, e in zip(xs, ys, s["by_k"]):
                ax.annotate(f"k={e['k']}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=color)
    # Tokens span orders of magnitude (a one-word answer vs ten chains of thought).
    ax.set_xscale("log")
    # Plain numbers; minor ticks labelled too (all of them when the points span under a decade).
    xs = [max(s["mean_tokens"], 0.5) for s in scores] + [max(e["mean_tokens"], 0.5) for s in scores for e in s.get("by_k") or []]
    shown = range(1, 10) if max(xs) / min(xs) < 10 else (2, 5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda x, _: f"{x:g}" if x > 0 and round(x / 10 ** math.floor(math.log10(x))) in shown else ""))
    ax.set_xlabel("mean generated tokens per test item (all k samples when voting)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=8)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path

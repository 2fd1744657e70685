"""How long the commands that load no model take, as a user times them: whole processes, median of 5.

    python bench/cli_startup.py [--repeats 5] [--baseline CHECKOUT]

Each command runs as its own process (``python -m sys2distill`` from this checkout's ``src``), timed
from start to exit; the table shows the median, minimum and maximum of the repeats, interleaved. The
target (issue: a new user's findings): each ≤ 2 s on 2 cores. ``python -c pass`` is the floor: the
interpreter alone. ``--baseline`` times the same commands from another checkout (e.g. a worktree of
an earlier commit) in the same loop, and adds the ratio baseline / this.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

COMMANDS = [
    ("sys2distill --help", ["--help"]),
    ("sys2distill list", ["list"]),
    ("sys2distill config rar_coin_flip", ["config", "rar_coin_flip"]),
    ("sys2distill run rar_coin_flip with a bad key (exit 2)", ["run", "rar_coin_flip", "generation.num_sample=2"]),
    ("sys2distill run rar_coin_flip with an unknown method (exit 2)", ["run", "rar_coin_flip",
                                                                       "evaluate.systems=[cot_fewshoot]"]),
]


def timed(argv: list[str], checkout: Path | None) -> float:
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout / "src")
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env,
                   cwd=checkout or HERE)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout whose src/ to time beside this one")
    args = ap.parse_args()
    checkouts = {"this": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    floor: list[float] = []
    times = {(name, who): [] for name, _ in COMMANDS for who in checkouts}
    for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every command alike
        floor.append(timed([sys.executable, "-c", "pass"], None))
        for name, argv in COMMANDS:
            for who, checkout in checkouts.items():
                times[name, who].append(timed([sys.executable, "-m", "sys2distill", *argv], checkout))
    med = statistics.median
    head = " | ".join(f"{who}: median (min–max), s" for who in checkouts)
    ratio = " | baseline / this" if args.baseline else ""
    print(f"| command | {head}{ratio} |  ({args.repeats} runs each, interleaved)")
    print("|---|" + "---|" * (len(checkouts) + bool(args.baseline)))
    print(f"| interpreter alone (floor) | {med(floor):.2f} ({min(floor):.2f}–{max(floor):.2f}) |"
          + " |" * (len(checkouts) - 1 + bool(args.baseline)))
    for name, _ in COMMANDS:
        cells = [f"{med(ts):.2f} ({min(ts):.2f}–{max(ts):.2f})" for ts in (times[name, who] for who in checkouts)]
        if args.baseline:
            cells.append(f"{med(times[name, 'baseline']) / med(times[name, 'this']):.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

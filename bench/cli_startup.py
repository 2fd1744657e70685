"""How long the commands that load no model take, as a user times them: whole processes, median of 5.

    python bench/cli_startup.py [--repeats 5]

Each command runs as its own process (the installed ``sys2distill`` entry point), timed from start to
exit; the table shows the median, minimum and maximum of the repeats, interleaved. The target (issue:
a new user's findings): each ≤ 2 s on 2 cores. ``python -c pass`` is the floor: the interpreter alone.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ("interpreter alone (floor)", [sys.executable, "-c", "pass"]),
    ("sys2distill --help", ["sys2distill", "--help"]),
    ("sys2distill list", ["sys2distill", "list"]),
    ("sys2distill config cot_lookup", ["sys2distill", "config", "cot_lookup"]),
    ("sys2distill run cot_lookup with a bad key (exit 2)", ["sys2distill", "run", "cot_lookup", "generation.num_sample=2"]),
    ("sys2distill run cot_lookup with an unknown method (exit 2)", ["sys2distill", "run", "cot_lookup",
                                                                    "evaluate.systems=[cot_fewshoot]"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("sys2distill") is None:
        sys.exit("the sys2distill command is not installed: pip install -e .")
    times: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every command alike
        for name, cmd in COMMANDS:
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - start)
    print(f"| command | median (s) | min | max |  ({args.repeats} runs each)\n|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} |")


if __name__ == "__main__":
    main()

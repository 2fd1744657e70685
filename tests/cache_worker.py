"""Subprocess for test_cache.py: a generation stage through ``CachedBackend``.

``python cache_worker.py DB TRACES LOG FIRST LAST DELAY [BARRIER]`` runs the System 1
method over examples FIRST..LAST-1 (2 samples each) with a scripted backend that appends
every (prompt, sample) it generates to LOG (fsynced, so a SIGKILL cannot hide one) and
sleeps DELAY seconds per prompt. With BARRIER (a folder) it writes ``ready.<pid>`` there
and waits for a ``go`` file, so two processes start writing at the same moment.
"""

import os
import sys
import time
from pathlib import Path

from scripted import ScriptedBackend

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.cache import CachedBackend
from sys2distill.generation import run_method
from sys2distill.methods.system1 import System1
from sys2distill.records import Example
from sys2distill.tasks.last_letter import LastLetter

N = 2  # samples per example


class LoggingBackend(ScriptedBackend):
    def __init__(self, log: Path, delay: float):
        super().__init__(lambda text, j: f"{text.split()[-2]} sample {j}")
        self.log, self.delay = log, delay

    def generate(self, prompts, params):
        out = super().generate(prompts, params)
        time.sleep(self.delay * len(prompts))
        with open(self.log, "a") as f:
            f.writelines(f"{m[-1]['content']}\t{j}\n" for m in prompts for j in range(params.n))
            f.flush()
            os.fsync(f.fileno())
        return out


def examples(first: int, last: int) -> list[Example]:
    return [Example(id=f"ex{i}", question=f"item number {i} ?", metadata={"num_words": 3}) for i in range(first, last)]


if __name__ == "__main__":
    db, traces, log = map(Path, sys.argv[1:4])
    first, last, delay = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    backend = CachedBackend(LoggingBackend(log, delay), db, commit_every=4)  # 2 prompts × 2 samples per commit
    if len(sys.argv) > 7:
        barrier = Path(sys.argv[7])
        (barrier / f"ready.{os.getpid()}").touch()
        while not (barrier / "go").exists():
            time.sleep(0.01)
    method = System1(LastLetter(train_size=1, test_size=1))
    params = SamplingParams(n=N, temperature=0.7, max_tokens=8, seed=3)
    run_method(method, examples(first, last), backend, params, traces, chunk_sequences=8 * N, desc="cached")

"""Word pools for the synthetic tasks, held out by split (arXiv 2407.06023 Sec. 4.1).

The paper distils on unlabeled inputs and tests on other inputs; for the name-based tasks a
test word must never appear in a training item, else the distilled model could memorise
per-name letters or flip outcomes instead of learning the procedure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any, Iterable

from sys2distill.errors import UserError

DATA = Path(__file__).parent / "data"
SPLITS = ("train", "test")


@functools.cache
def all_names() -> tuple[str, ...]:
    """The ~870 common English first names of ``data/names.txt``."""
    return tuple(w for w in (DATA / "names.txt").read_text(encoding="utf-8").split())


def name_pool(split: str) -> list[str]:
    """The names of one split; the two halves are disjoint and fixed.

    A hash of the name, not the task seed, picks its side: every seed then holds out the same
    test words, and adding a name to the file moves no other name across the split.
    """
    side = SPLITS.index(split)
    return [w for w in all_names() if hashlib.sha256(w.encode()).digest()[0] % 2 == side]


def sample_words(rng: random.Random, pool: list[str], k: int, n: int) -> list[list[str]]:
    """``n`` distinct ordered tuples of ``k`` distinct words from ``pool``."""
    if n > math.perm(len(pool), k):
        raise UserError(f"cannot make {n} distinct items of {k} words from {len(pool)} names: lower the size")
    seen: set[tuple[str, ...]] = set()
    out = []
    while len(out) < n:
        words = tuple(rng.sample(pool, k))
        if words not in seen:  # a repeated item would count twice in training and in accuracy
            seen.add(words)
            out.append(list(words))
    return out


def check_choice(value: Any, choices: Iterable[Any], what: str) -> None:
    """Fail fast at setup with a ``UserError`` naming the valid choices."""
    choices = list(choices)
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}: choose one of {', '.join(map(repr, choices))}")


def read_rar(filename: str) -> list[dict[str, Any]]:
    """One JSON list from the vendored RaR data (Deng et al. 2023, MIT licence in data/rar)."""
    return json.loads((DATA / "rar" / filename).read_text(encoding="utf-8"))

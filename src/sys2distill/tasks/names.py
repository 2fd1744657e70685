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


def read_rar(filename: str) -> list[dict[str, str]]:
    """One file of the vendored RaR data (Deng et al. 2023, MIT licence in data/rar), as ``read_items`` reads it."""
    return read_items(DATA / "rar" / filename)


def read_items(path: str | Path) -> list[dict[str, str]]:
    """``{"question", "answer"}`` items of a file in RaR's format, a JSON list or JSONL.

    RaR's test files hold ``{"question", "answer", ...}`` rows; its coin_val.json pool holds
    BIG-bench's ``{"inputs": " Q: ...", "targets"}``. Anything else is a one-line ``UserError``
    naming the file, the item and the fix.
    """
    path = Path(path).expanduser()
    fix = 'point task.options.path at a JSON list or JSONL file of {"question", "answer"} items (RaR format)'
    if not path.exists():
        raise UserError(f"{path} does not exist: {fix}")
    if path.is_dir():
        raise UserError(f"{path} is a folder: {fix}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise UserError(f"{path} is gzip-compressed: decompress it (gunzip) and point task.options.path at the result")
    try:
        text: str | None = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise UserError(f"{path} is not UTF-8 text: {fix}")
    if text.lstrip().startswith("["):  # one JSON list, as RaR ships them
        try:
            rows = list(enumerate(json.loads(text), 1))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): fix the file") from None
        where = "item"
    else:  # JSONL: one item per line
        rows, where = [], "line"
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path} line {i} is not valid JSON ({e.msg}): {fix}") from None
    items = []
    for i, row in rows:
        if isinstance(row, dict) and isinstance(row.get("inputs"), str) and "question" not in row:
            row = {"question": row["inputs"].strip().removeprefix("Q: "), "answer": row.get("targets")}
        if not (isinstance(row, dict) and isinstance(row.get("question"), str) and isinstance(row.get("answer"), str)
                and row["question"].strip() and row["answer"].strip()):
            raise UserError(f'{path} {where} {i} is not an item: each needs a non-empty "question" and "answer" '
                            '(or "inputs" and "targets") string')
        items.append({"question": row["question"], "answer": row["answer"]})
    if not items:
        raise UserError(f"{path} holds no items: {fix}")
    return items

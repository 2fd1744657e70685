"""A crash-safe generation cache wrapped around any backend (issue 5, part 2).

Every completion is stored in SQLite (WAL journal, ``synchronous=FULL``) under a key made of
(model identity, chat messages, sampling parameters, sample index, seed). A committed
transaction survives ``kill -9``; ``INSERT OR IGNORE`` on the key means two processes writing
the same completion at once keep one row and lose none. A rerun or resumed run asks the inner
backend only for the (prompt, sample) pairs it lacks.

``n`` is not part of the key: sample j depends on (seed, prompt, j) alone (``backends.base``),
so asking for 8 samples after 4 reuses the first 4 — DSPy's cache once collapsed repeated
samples because the sample index was missing from its key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from sys2distill.backends.base import Backend, Messages, SamplingParams
from sys2distill.records import Completion

SCHEMA = """CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY, model TEXT, messages TEXT, params TEXT, sample INTEGER,
    text TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason TEXT,
    created REAL, logprob REAL)"""


def model_fingerprint(model: str) -> str:
    """The model's identity for the key: a local folder adds its weight, config and template files' sizes and mtimes,
    so a retrained checkpoint at the same path never reuses its predecessor's completions."""
    path = Path(model)
    if not path.is_dir():
        return model
    files = sorted(f for f in path.iterdir() if f.suffix in {".safetensors", ".bin", ".gguf", ".json", ".jinja"})
    stamp = "".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns};" for f in files)
    return f"{model}#{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"


def open_database(path: Path, timeout: float = 60.0) -> sqlite3.Connection:
    """The cache's connection, safe when several processes open a new cache file at the same moment.

    Switching a database to WAL takes an exclusive lock. When two connections that both read the
    file try it at once they would wait on each other, so SQLite fails one of them at once with
    "database is locked", without its busy wait: the switch is retried until ``timeout``. WAL is
    stored in the file, so later opens find it set.
    """
    # isolation_level=None: we open transactions ourselves; timeout: wait for another writer's lock
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a torn write is rolled back
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.1)
    db.execute("PRAGMA synchronous=FULL")  # fsync each commit: survives an OS crash too, not only kill -9
    db.execute(SCHEMA)
    if "logprob" not in {row[1] for row in db.execute("PRAGMA table_info(completions)")}:  # a cache made before it
        try:
            db.execute("ALTER TABLE completions ADD COLUMN logprob REAL")
        except sqlite3.OperationalError as err:  # another process added it first
            if "duplicate column" not in str(err):
                raise
    return db


class CachedBackend:
    """``inner`` behind an on-disk cache; committed every ``commit_every`` sequences."""

    def __init__(self, inner: Backend, path: str | Path, identity: str | None = None, commit_every: int = 64):
        self.inner, self.path, self.commit_every = inner, Path(path), commit_every
        self.model_id = inner.model_id
        self.identity = identity or inner.model_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = open_database(self.path)
        self.hits = self.misses = 0

    def key(self, messages: Messages, params: SamplingParams, j: int) -> tuple[str, str]:
        """(hash, params JSON); greedy decoding ignores seed, top_p and the sample index."""
        p = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
             "stop": list(params.stop), "seed": params.seed}
        if params.temperature == 0:
            p, j = {**p, "top_p": None, "seed": None}, 0
        if params.logprobs:  # a completion cached without its log-probs cannot answer a request for them
            p["logprobs"] = True
        raw = json.dumps([self.identity, messages, p, j], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest(), json.dumps(p)

    def lookup(self, keys: list[str]) -> dict[str, Completion]:
        found = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            part = keys[start:start + 500]
            rows = self.db.execute(f"SELECT key, text, prompt_tokens, completion_tokens, finish_reason, logprob FROM completions "
                                   f"WHERE key IN ({','.join('?' * len(part))})", part)
            found.update({k: Completion(*rest) for k, *rest in rows})
        return found

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        keys = [[self.key(m, params, params.first_sample + j) for j in range(params.n)] for m in prompts]
        have = self.lookup([k for row in keys for k, _ in row])
        todo = [i for i, row in enumerate(keys) if any(k not in have for k, _ in row)]
        self.hits += len({k for row in keys for k, _ in row if k in have})
        # Small slices, each committed when done: a crash loses at most the slice in flight.
        step = max(1, self.commit_every // params.n)
        for start in range(0, len(todo), step):
            idx = todo[start:start + step]
            # Prompts missing any sample are asked for all n: a backend draws sample j from
            # (seed, prompt, j), so the samples already cached come back the same and are not rewritten.
            outs = self.inner.generate([prompts[i] for i in idx], params)
            new = {k: (k, self.identity, json.dumps(prompts[i], ensure_ascii=False), p, j, c.text, c.prompt_tokens,
                       c.completion_tokens, c.finish_reason, time.time(), c.logprob)
                   for i, cs in zip(idx, outs)
                   for j, ((k, p), c) in enumerate(zip(keys[i], cs), params.first_sample) if k not in have}
            self.misses += len(new)
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?,?,?,?,?)", new.values())
            self.db.execute("COMMIT")
            have.update({k: Completion(*r[5:9], logprob=r[10]) for k, r in new.items()})
        return [[have[k] for k, _ in row] for row in keys]

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

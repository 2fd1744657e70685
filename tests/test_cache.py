"""The generation cache: keys, reuse, SIGKILL mid-run, and two writers at once (issue 5, part 2)."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from cache_worker import N, examples
from scripted import ScriptedBackend

from sys2distill.backends.base import SamplingParams
from sys2distill.backends.cache import CachedBackend, model_fingerprint
from sys2distill.generation import load_complete

WORKER = Path(__file__).with_name("cache_worker.py")
TOTAL = 40  # examples in the killed run
P = SamplingParams(n=3, temperature=0.7, max_tokens=8, seed=1)


def echo():
    return ScriptedBackend(lambda text, j: f"{text} #{j}")


def rows(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as c:
        return {r[0]: r[1:] for r in c.execute("SELECT key, messages, sample, text, created FROM completions")}


def spawn(db, traces, log, first, last, delay, barrier=None):
    args = [sys.executable, str(WORKER), str(db), str(traces), str(log), str(first), str(last), str(delay)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(args + ([str(barrier)] if barrier else []), env=env, stderr=subprocess.PIPE, text=True)


def logged(log: Path) -> list[tuple[str, int]]:
    return [(p, int(j)) for p, j in (line.split("\t") for line in log.read_text().splitlines())] if log.exists() else []


def test_hits_misses_and_sample_reuse(tmp_path):
    inner = echo()
    cache = CachedBackend(inner, tmp_path / "c.sqlite")
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    first = cache.generate(prompts, P)
    assert len(cache) == 12 and cache.misses == 12 and cache.hits == 0
    assert CachedBackend(echo(), tmp_path / "c.sqlite").generate(prompts, P) == first  # survives a new process/object
    # More samples reuse the first 3; only prompts lacking one reach the inner backend.
    more = cache.generate(prompts[:2], SamplingParams(**{**P.__dict__, "n": 5}))
    assert [cs[:3] for cs in more] == first[:2] and len(cache) == 16
    assert inner.calls[-1][0] == ["q0", "q1"]
    # Any other sampling parameter or seed is another key.
    cache.generate(prompts[:1], SamplingParams(**{**P.__dict__, "seed": 2}))
    assert len(cache) == 19
    # Greedy: one entry whatever n, seed or top_p.
    cache.generate(prompts[:1], SamplingParams(n=4, temperature=0, max_tokens=8, seed=9))
    cache.generate(prompts[:1], SamplingParams(n=1, temperature=0, top_p=0.5, max_tokens=8))
    assert len(cache) == 20


def test_model_identity_changes_with_the_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"a")
    before = model_fingerprint(str(tmp_path))
    time.sleep(0.01)
    (tmp_path / "model.safetensors").write_bytes(b"ab")  # retrained in place
    assert model_fingerprint(str(tmp_path)) != before and model_fingerprint("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"
    a = CachedBackend(echo(), tmp_path / "c.sqlite", identity="m1").key([], P, 0)
    assert a != CachedBackend(echo(), tmp_path / "c.sqlite", identity="m2").key([], P, 0)


def test_sigkill_mid_run_then_resume_loses_duplicates_and_regenerates_nothing(tmp_path):
    db, traces, log1, log2 = tmp_path / "cache.sqlite", tmp_path / "gen.jsonl", tmp_path / "log1", tmp_path / "log2"
    proc = spawn(db, traces, log1, 0, TOTAL, delay=0.1)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db.exists() and len(rows(db)) >= 24:  # mid-way: 12 of 40 examples committed
                break
        except sqlite3.OperationalError:  # the worker has not created the table yet
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    before = rows(db)
    assert 24 <= len(before) < TOTAL * N
    cached = {(m, s) for m, s, *_ in before.values()}

    resume = spawn(db, traces, log2, 0, TOTAL, delay=0.0)
    assert resume.wait(timeout=120) == 0, resume.stderr.read()
    after = rows(db)
    assert len(after) == TOTAL * N  # nothing lost; the key is the primary key, so nothing duplicated
    assert all(after[k] == v for k, v in before.items())  # committed rows untouched (same text, same time)
    regenerated = {(f'[{{"role": "user", "content": "{p}"}}]', j) for p, j in logged(log2)}
    assert not regenerated & cached  # nothing committed before the kill was generated again
    assert len(regenerated) == len(logged(log2)) == TOTAL * N - len(before)  # exactly the missing ones, once each
    # At most the slice being generated when the kill came (2 prompts × 2 samples) was done twice.
    assert len(logged(log1)) + len(logged(log2)) - TOTAL * N <= 4

    done = load_complete(traces, N)
    assert sorted(done, key=lambda k: int(k[2:])) == [ex.id for ex in examples(0, TOTAL)]
    for ex in examples(0, TOTAL):
        assert [t.final for t in done[ex.id]] == [f"{ex.question.split()[-2]} sample {j}" for j in range(N)]


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    db = tmp_path / "shared.sqlite"
    a = spawn(db, tmp_path / "a.jsonl", tmp_path / "la", 0, 60, 0.0, tmp_path)
    b = spawn(db, tmp_path / "b.jsonl", tmp_path / "lb", 30, 90, 0.0, tmp_path)  # examples 30..59 overlap
    deadline = time.monotonic() + 90
    while len(list(tmp_path.glob("ready.*"))) < 2 and time.monotonic() < deadline and None in (a.poll(), b.poll()):
        time.sleep(0.05)
    (tmp_path / "go").touch()  # both have opened the cache: off together
    for p in (a, b):
        assert p.wait(timeout=120) == 0, p.stderr.read()
    stored = rows(db)
    assert len(stored) == 90 * N  # every completion of both, the overlap once
    assert {(m, s) for m, s, *_ in stored.values()} == {
        (f'[{{"role": "user", "content": "{ex.question}"}}]', j) for ex in examples(0, 90) for j in range(N)}
    for name, first, last in (("a", 0, 60), ("b", 30, 90)):
        assert len(load_complete(tmp_path / f"{name}.jsonl", N)) == last - first


def test_many_connections_opening_a_new_cache_at_once_all_succeed(tmp_path):
    """Two connections switching a fresh file to WAL can deadlock; SQLite then fails one at once
    ("database is locked", no busy wait). With the plain pragma ~5% of these opens failed."""
    failures = []

    def open_at_once(path: Path, start: threading.Barrier):
        start.wait()
        try:
            CachedBackend(echo(), path).db.close()
        except sqlite3.OperationalError as err:
            failures.append(err)

    for trial in range(100):
        start = threading.Barrier(4)
        threads = [threading.Thread(target=open_at_once, args=(tmp_path / f"{trial}.sqlite", start)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert sqlite3.connect(tmp_path / "0.sqlite").execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_log_probs_are_kept_and_a_cache_from_before_them_still_opens(tmp_path):
    db = tmp_path / "c.sqlite"
    with sqlite3.connect(db) as c:  # a cache as written before completions had log-probs
        c.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, model TEXT, messages TEXT, params TEXT, sample INTEGER, "
                  "text TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason TEXT, created REAL)")
    inner = echo()
    scored = lambda prompts, params: [[replace(c, logprob=-0.5 * c.completion_tokens) if params.logprobs else c  # noqa: E731
                                       for c in cs] for cs in ScriptedBackend.generate(inner, prompts, params)]
    inner.generate = scored
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    asked = replace(P, logprobs=True)
    plain = CachedBackend(inner, db).generate(prompts, P)
    assert all(c.logprob is None for cs in plain for c in cs)
    first = CachedBackend(inner, db).generate(prompts, asked)  # not answered from completions cached without them
    assert all(c.logprob == -0.5 * c.completion_tokens for cs in first for c in cs)
    again = CachedBackend(echo(), db)
    assert again.generate(prompts, asked) == first and again.misses == 0  # read back with their log-probs

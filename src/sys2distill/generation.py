"""Run a method over many examples, writing traces as it goes and resuming where it stopped."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from itertools import groupby
from pathlib import Path

from tqdm.auto import tqdm

from sys2distill.adaptive import StopRule
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.methods.base import Method
from sys2distill.records import Example, Trace, append_jsonl, from_dict, write_jsonl

TRACE_FIELDS = [f.name for f in dataclasses.fields(Trace)]


def _trace(line: bytes) -> Trace | None:
    """The trace a JSONL line holds; None for anything else (a torn write, damage)."""
    try:
        data = json.loads(line)
        trace = from_dict(Trace, {k: data[k] for k in TRACE_FIELDS})
    except (ValueError, TypeError, KeyError):  # not JSON (or not UTF-8), or not a trace's fields
        return None
    return trace if isinstance(trace.example_id, str) and type(trace.sample) is int else None


def load_traces(path: Path) -> dict[str, list[Trace]]:
    """Traces on disk per example: samples 0, 1, … with no gaps.

    A line that is not a whole trace (the torn last line of a killed run, or damage anywhere), a
    sample seen before and a sample after a gap are dropped, and the file rewritten without them,
    so a resumed run redoes exactly those samples and never duplicates one.
    """
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = [line for line in raw.splitlines() if line.strip()]
    by_id: dict[str, dict[int, Trace]] = {}
    for t in filter(None, map(_trace, lines)):
        by_id.setdefault(t.example_id, {}).setdefault(t.sample, t)
    prefixes = {}
    for ex_id, samples in by_id.items():
        j = 0
        while j in samples:
            j += 1
        prefixes[ex_id] = [samples[i] for i in range(j)]
    kept = sum(len(v) for v in prefixes.values())
    if kept != len(lines) or raw[-1:] not in (b"\n", b""):
        write_jsonl(path, [t for ts in prefixes.values() for t in ts])
    return prefixes


def load_complete(path: Path, n: int) -> dict[str, list[Trace]]:
    """The examples that have all ``n`` samples on disk (their first ``n``)."""
    return {k: v[:n] for k, v in load_traces(path).items() if len(v) >= n}


def run_method(method: Method, examples: list[Example], backend: Backend, params: SamplingParams, path: Path,
               chunk_sequences: int, desc: str, stop: StopRule | None = None) -> dict[str, list[Trace]]:
    """Traces for every example, generated only where missing from ``path``.

    Samples are drawn in rounds — ``stop.min_samples`` first, then one more per round — and an
    example stops as soon as ``stop.done`` says its vote is settled; the default rule is plain
    self-consistency (all ``params.n`` in one round). Sample j of an example is the same draw
    either way (it is seeded by j), so an adaptive run is a prefix of the fixed one.
    """
    stop = stop or StopRule.fixed(params.n)
    have = load_traces(path)

    def done(ex: Example) -> bool:
        return stop.done([t.answer for t in have.get(ex.id, [])])

    def want(ex: Example) -> tuple[int, int]:
        """(samples drawn, samples to draw this round); equal pairs batch together."""
        k = len(have.get(ex.id, []))
        return k, min(max(stop.min_samples - k, 1), params.n - k)

    active = [ex for ex in examples if not done(ex)]
    with tqdm(total=len(examples), initial=len(examples) - len(active), desc=desc, unit="ex", dynamic_ncols=True) as bar:
        while active:
            for (k, n), group in groupby(sorted(active, key=want), key=want):
                group = list(group)
                # Chunks count inputs by their full budget of samples, so every round batches the same
                # inputs together: fp32 results can differ in the last bits with the batch's padding,
                # and a draw landing within that rounding of a token boundary would flip.
                per_chunk = max(1, chunk_sequences // params.n)
                for start in range(0, len(group), per_chunk):
                    chunk = group[start:start + per_chunk]
                    traces = method.run(chunk, backend, replace(params, n=n, first_sample=k))
                    append_jsonl(path, [t for row in traces for t in row])
                    for ex, row in zip(chunk, traces):
                        have[ex.id] = have.get(ex.id, []) + row
                    bar.update(sum(done(ex) for ex in chunk))
            active = [ex for ex in active if not done(ex)]
    return {ex.id: have[ex.id][: params.n] for ex in examples}

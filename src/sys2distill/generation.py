"""Run a method over many examples, writing traces as it goes and resuming where it stopped."""

from __future__ import annotations

from dataclasses import replace
from itertools import groupby
from pathlib import Path

from tqdm.auto import tqdm

from sys2distill.adaptive import StopRule
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.methods.base import Method
from sys2distill.records import Example, Trace, append_jsonl, read_records, write_jsonl


def load_traces(path: Path) -> dict[str, list[Trace]]:
    """Traces on disk per example: samples 0, 1, … with no gaps.

    A run killed mid-write may leave a torn last line or a sample after a gap; both are
    dropped (and the file rewritten without them) so a resumed run redoes exactly those
    samples and never duplicates one.
    """
    if not path.exists():
        return {}
    records = read_records(path, Trace, resume=True)
    by_id: dict[str, dict[int, Trace]] = {}
    for t in records:
        by_id.setdefault(t.example_id, {})[t.sample] = t
    prefixes = {}
    for ex_id, samples in by_id.items():
        j = 0
        while j in samples:
            j += 1
        prefixes[ex_id] = [samples[i] for i in range(j)]
    kept = sum(len(v) for v in prefixes.values())
    if kept != len(records) or path.read_bytes()[-1:] not in (b"\n", b""):
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

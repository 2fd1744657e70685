"""Run a method over many examples, writing traces as it goes and resuming where it stopped."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.methods.base import Method
from sys2distill.records import Example, Trace, append_jsonl, read_records, write_jsonl


def load_complete(path: Path, n: int) -> dict[str, list[Trace]]:
    """Traces already on disk, for examples that have all ``n`` samples.

    A run killed mid-write may leave a torn last line or an example with fewer samples;
    both are dropped (and the file rewritten without them) so the resumed run redoes just
    that example and never duplicates a sample.
    """
    if not path.exists():
        return {}
    by_id: dict[str, dict[int, Trace]] = {}
    records = read_records(path, Trace, resume=True)
    for t in records:
        by_id.setdefault(t.example_id, {})[t.sample] = t
    complete = {k: [v[j] for j in range(n)] for k, v in by_id.items() if set(v) >= set(range(n))}
    kept = [t for ts in complete.values() for t in ts]
    if len(kept) != len(records) or path.read_bytes()[-1:] not in (b"\n", b""):
        write_jsonl(path, kept)
    return complete


def run_method(method: Method, examples: list[Example], backend: Backend, params: SamplingParams, path: Path,
               chunk_size: int, desc: str) -> dict[str, list[Trace]]:
    """Traces for every example (``params.n`` each), generated only where missing from ``path``."""
    done = load_complete(path, params.n)
    todo = [ex for ex in examples if ex.id not in done]
    with tqdm(total=len(examples), initial=len(examples) - len(todo), desc=desc, unit="ex", dynamic_ncols=True) as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            traces = method.run(chunk, backend, params)
            append_jsonl(path, [t for row in traces for t in row])
            done.update({ex.id: row for ex, row in zip(chunk, traces)})
            bar.update(len(chunk))
    return {ex.id: done[ex.id] for ex in examples}

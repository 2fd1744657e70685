"""Typed records that flow one way through the pipeline, saved as JSONL.

task → ``Example`` → method → ``Trace`` → filter → ``FilterDecision`` → dataset →
``DistillRecord`` → trainer → evaluator (``Trace`` again) → report.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from sys2distill.errors import UserError
from sys2distill.rundir import write_atomic

R = TypeVar("R")


@dataclass
class Example:
    """One task input. ``answer`` is the gold label: only the evaluator may read it."""

    id: str
    question: str
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """One sampled continuation with exact token counts from the backend's tokenizer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" (EOS or stop string) or "length"
    # The generated tokens' summed natural-log probabilities under the model (temperature 1, no top-p), the
    # end of text included; set when asked for (``SamplingParams.logprobs``) by a backend that has them
    logprob: float | None = None


@dataclass
class Step:
    """One generation inside a System 2 method (e.g. RaR's rephrase step)."""

    name: str
    messages: list[dict[str, str]]
    output: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    logprob: float | None = None  # Completion.logprob; left out of the JSONL when None (files read before it had it)


@dataclass
class Trace:
    """Everything a method did for one example and one sample.

    ``tokens`` counts every generated token, intermediate and final, as the paper's
    #Tokens column does (Sec. 4, "we report the mean number of generated tokens").
    """

    example_id: str
    method: str
    sample: int
    steps: list[Step]
    final: str  # the text the user would read as the answer (last step's output)
    answer: str | None  # extracted by the task's rule; None when extraction failed
    tokens: int

    @property
    def id(self) -> str:
        return f"{self.method}/{self.example_id}/{self.sample}"


@dataclass
class FilterDecision:
    """The consistency filter's verdict on the N traces of one example."""

    example_id: str
    kept: bool
    answer: str | None  # the winning answer, None if no winner
    votes: dict[str, int]
    agreement: float  # winner's share of all N samples (failed extractions count against it)
    reason: str  # why kept or dropped, in words
    trace_ids: list[str]  # the winning traces
    details: dict[str, Any] = field(default_factory=dict)  # filter-specific evidence, e.g. USC's raw outputs


@dataclass
class DistillRecord:
    """A prompt–completion pair in TRL's conversational format, loadable by ``datasets``."""

    id: str
    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    metadata: dict[str, Any]


def step_dict(step: Step) -> dict[str, Any]:
    """A step as plain data, its ``logprob`` only where it has one: files stay as they were without them."""
    data = asdict(step)
    if data["logprob"] is None:
        del data["logprob"]
    return data


def to_dict(record: Any) -> dict[str, Any]:
    data = asdict(record)
    if isinstance(record, Trace):
        data["steps"] = [step_dict(s) for s in record.steps]
    return data


def from_dict(cls: type[R], data: dict[str, Any]) -> R:
    if cls is Trace:
        data = {**data, "steps": [Step(**s) for s in data["steps"]]}
    return cls(**data)  # type: ignore[call-arg]


def append_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Append records and fsync, so a crash loses at most the batch being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r if isinstance(r, dict) else to_dict(r), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def jsonl_text(records: Iterable[Any]) -> str:
    """Records as JSONL text, one object per line (what ``write_jsonl`` and ``append_jsonl`` write)."""
    return "".join(json.dumps(r if isinstance(r, dict) else to_dict(r), ensure_ascii=False) + "\n" for r in records)


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Write a whole file atomically (``rundir.write_atomic``): readers never see half of it."""
    write_atomic(path, jsonl_text(records))


def _read_text(path: Path) -> str:
    """A text file's contents, gunzipped when it is gzip (datasets ship as ``.jsonl.gz``, e.g. OASST2's
    trees); a missing path, a folder or a binary file is a ``UserError`` naming the fix."""
    if not path.exists():
        raise UserError(f"file not found: {path}: check the path (or rerun the stage that writes it)")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a JSONL file: name the file itself")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip's magic number
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UserError(f"{path} is a damaged gzip file ({e}): download it again or pass the uncompressed file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start} is not; a binary or compressed file?): "
                        "pass the JSONL file itself, plain or gzipped") from None


def iter_jsonl(path: Path, *, resume: bool = False) -> Iterator[dict[str, Any]]:
    """Yield JSON objects, one per line, from a plain or gzipped file.

    A malformed line is a ``UserError`` naming file and line. With ``resume=True`` a torn
    *last* line (a process killed mid-write) is skipped instead: the stage that wrote it
    will redo that batch.
    """
    lines = _read_text(path).splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if resume and i == len(lines):
                return
            raise UserError(f"malformed JSONL in {path} line {i}: {e.msg}; fix or delete that line") from None
        if not isinstance(obj, dict):
            raise UserError(f"malformed JSONL in {path} line {i}: expected a JSON object per line")
        yield obj


def read_records(path: Path, cls: type[R], *, resume: bool = False) -> list[R]:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    out = []
    for i, obj in enumerate(iter_jsonl(path, resume=resume), 1):
        missing = names - obj.keys() - {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}  # type: ignore[arg-type]
        if missing:
            raise UserError(f"record {i} in {path} lacks field(s) {sorted(missing)}; expected {cls.__name__} records")
        out.append(from_dict(cls, {k: v for k, v in obj.items() if k in names}))
    return out

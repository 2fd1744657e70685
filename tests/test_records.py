import json

import pytest

from sys2distill.errors import UserError
from sys2distill.generation import load_complete, run_method
from sys2distill.methods.system1 import System1
from sys2distill.records import Example, Step, Trace, append_jsonl, iter_jsonl, read_records, write_jsonl
from sys2distill.backends.base import SamplingParams
from scripted import ScriptedBackend
from sys2distill.tasks.base import Task


class FakeTask(Task):
    name = "fake"

    def extract_answer(self, text):
        return text.split()[-1] if text else None

    def prompt_fields(self, example):
        return {}


def trace(ex, j):
    return Trace(ex, "system1", j, [Step("answer", [{"role": "user", "content": "q"}], "a", 1, 1)], "a", "a", 1)


def test_roundtrip(tmp_path):
    path = tmp_path / "t.jsonl"
    ts = [trace("e1", 0), trace("e1", 1)]
    write_jsonl(path, ts)
    assert read_records(path, Trace) == ts


def test_malformed_jsonl_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "question": "q"}\nnot json\n{"id": "b", "question": "q"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl line 2"):
        read_records(path, Example)
    with pytest.raises(UserError, match="lacks field"):
        path.write_text('{"id": "a"}\n')
        read_records(path, Example)
    with pytest.raises(UserError, match="not found"):
        list(iter_jsonl(tmp_path / "missing.jsonl"))


def test_torn_tail_and_gaps_are_dropped_on_resume(tmp_path):
    path = tmp_path / "g.jsonl"
    # e2 lacks sample 1; e3 has sample 1 without sample 0 (a gap).
    append_jsonl(path, [trace("e1", 0), trace("e1", 1), trace("e2", 0), trace("e3", 1)])
    with open(path, "a") as f:
        f.write('{"example_id": "e2", "meth')  # killed mid-write
    assert list(load_complete(path, n=2)) == ["e1"]
    # The file was repaired: it parses strictly and keeps every gap-free sample.
    assert [t.id for t in read_records(path, Trace)] == ["system1/e1/0", "system1/e1/1", "system1/e2/0"]


def test_partial_examples_resume_from_the_next_sample(tmp_path):
    path = tmp_path / "g.jsonl"
    append_jsonl(path, [trace("e0", 0)])
    backend = ScriptedBackend(lambda prompt, j: f"answer {j}")
    out = run_method(System1(FakeTask()), [Example("e0", "q0")], backend, SamplingParams(n=3, temperature=1), path, 4, "t")
    assert backend.calls[0][1].first_sample == 1 and backend.calls[0][1].n == 2
    assert [t.sample for t in out["e0"]] == [0, 1, 2]


def test_adaptive_sampling_stops_settled_inputs_early(tmp_path):
    from sys2distill.adaptive import StopRule

    # e0's samples always agree; e1's alternate, so its vote never settles before the cap.
    examples = [Example("e0", "q0"), Example("e1", "q1")]
    backend = ScriptedBackend(lambda prompt, j: "x" if prompt == "q0" else f"{j % 2}")
    stop = StopRule(max_samples=8, min_samples=3, confidence=0.9)
    out = run_method(System1(FakeTask()), examples, backend, SamplingParams(n=8, temperature=1), tmp_path / "a.jsonl",
                     4, "t", stop=stop)
    assert len(out["e0"]) == 3  # 3 of 3 agree: P(leader ahead) = 0.9375 ≥ 0.9
    assert len(out["e1"]) == 8  # 4 vs 4 at the cap
    assert [t.sample for t in out["e1"]] == list(range(8))
    # Resuming an adaptive run draws nothing new.
    backend.calls.clear()
    run_method(System1(FakeTask()), examples, backend, SamplingParams(n=8, temperature=1), tmp_path / "a.jsonl", 4, "t",
               stop=stop)
    assert backend.calls == []


def test_run_method_resumes_without_regenerating(tmp_path):
    path = tmp_path / "g.jsonl"
    examples = [Example(f"e{i}", f"question {i}") for i in range(5)]
    backend = ScriptedBackend(lambda prompt, j: f"answer {prompt.split()[-1]}")
    params = SamplingParams(n=2, temperature=0.7)
    first = run_method(System1(FakeTask()), examples[:3], backend, params, path, chunk_sequences=4, desc="t")
    assert len(first) == 3 and all(len(v) == 2 for v in first.values())
    backend.calls.clear()
    again = run_method(System1(FakeTask()), examples, backend, params, path, chunk_sequences=4, desc="t")
    asked = [q for texts, _ in backend.calls for q in texts]
    assert asked == ["question 3", "question 4"]  # only the missing inputs
    assert [again[e.id][0].answer for e in examples] == ["0", "1", "2", "3", "4"]
    assert len(read_records(path, Trace)) == 10  # nothing duplicated
    assert json.loads(path.read_text().splitlines()[0])["example_id"] == "e0"

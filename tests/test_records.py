import json

import pytest

from sys2distill.errors import UserError
from sys2distill.generation import load_complete, run_method
from sys2distill.methods.system1 import System1
from sys2distill.records import Example, Step, Trace, append_jsonl, iter_jsonl, read_records, write_jsonl
from sys2distill.backends.base import SamplingParams
from scripted import ScriptedBackend


class FakeTask:
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


def test_torn_tail_and_partial_example_are_dropped_on_resume(tmp_path):
    path = tmp_path / "g.jsonl"
    append_jsonl(path, [trace("e1", 0), trace("e1", 1), trace("e2", 0)])  # e2 lacks sample 1
    with open(path, "a") as f:
        f.write('{"example_id": "e2", "meth')  # killed mid-write
    done = load_complete(path, n=2)
    assert list(done) == ["e1"]
    # The file was repaired: it parses strictly and holds only complete examples.
    assert [t.example_id for t in read_records(path, Trace)] == ["e1", "e1"]


def test_run_method_resumes_without_regenerating(tmp_path):
    path = tmp_path / "g.jsonl"
    examples = [Example(f"e{i}", f"question {i}") for i in range(5)]
    backend = ScriptedBackend(lambda prompt, j: f"answer {prompt.split()[-1]}")
    params = SamplingParams(n=2, temperature=0.7)
    first = run_method(System1(FakeTask()), examples[:3], backend, params, path, chunk_size=2, desc="t")
    assert len(first) == 3 and all(len(v) == 2 for v in first.values())
    backend.calls.clear()
    again = run_method(System1(FakeTask()), examples, backend, params, path, chunk_size=2, desc="t")
    asked = [q for texts, _ in backend.calls for q in texts]
    assert asked == ["question 3", "question 4"]  # only the missing inputs
    assert [again[e.id][0].answer for e in examples] == ["0", "1", "2", "3", "4"]
    assert len(read_records(path, Trace)) == 10  # nothing duplicated
    assert json.loads(path.read_text().splitlines()[0])["example_id"] == "e0"

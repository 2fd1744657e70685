"""``sys2distill answer``: a finished run's distilled model (or one of its methods) on a user's new inputs."""

import json
import math

import pytest
from test_pipeline import make, tiny  # noqa: F401  (tiny: the fixture)

from sys2distill.answering import Answer, answer_file, read_inputs
from sys2distill.errors import UserError
from sys2distill.records import Trace, read_records
from sys2distill.tasks import REGISTRY as TASKS

QUESTIONS = ["Take the last letters of the words in \"Ada Lovelace\" and concatenate them.",
             "Take the last letters of the words in \"Alan Turing\" and concatenate them.",
             "Take the last letters of the words in \"Grace Hopper\" and concatenate them.",
             "Take the last letters of the words in \"Edsger Dijkstra\" and concatenate them.",
             "Take the last letters of the words in \"Barbara Liskov\" and concatenate them."]


def write_questions(path, questions=QUESTIONS):
    path.write_text("".join(json.dumps({"question": q, "num_words": 2}) + "\n" for q in questions))
    return path


def test_a_distilled_model_answers_new_inputs_with_a_confidence_and_resumes(tmp_path, tiny):  # noqa: F811
    p = make(tmp_path, tiny)
    p.run()
    inputs = write_questions(tmp_path / "mine.jsonl")
    out = answer_file(p, inputs)  # default: the first distilled System 2 model
    assert out == p.dir / "answers" / "mine.distilled-rar_2step.jsonl"
    answers = read_records(out, Answer)
    assert [(a.id, a.row, a.question) for a in answers] == [(f"input-{i:05d}", i, q) for i, q in enumerate(QUESTIONS, 1)]
    traces = read_records(p.dir / "answers" / "mine.distilled-rar_2step.traces.jsonl", Trace)
    assert all(t.steps[0].messages == p.method("system1").prompt("answer", ex) and len(t.steps) == 1
               for t, ex in zip(traces, read_inputs(p.task, inputs)))  # the System 1 prompt: no reasoning step
    for a, t in zip(answers, traces):
        assert a.output == t.final and a.tokens == t.tokens >= 1 and a.system == "distilled:rar_2step"
        assert 0 <= a.confidence <= 1 and a.confidence == math.exp(t.steps[-1].logprob)

    # Killed mid-file (a torn last line, answers not yet written): the rerun draws only what is missing.
    lines = (p.dir / "answers" / "mine.distilled-rar_2step.traces.jsonl").read_bytes().splitlines(keepends=True)
    (p.dir / "answers" / "mine.distilled-rar_2step.traces.jsonl").write_bytes(b"".join(lines[:2]) + lines[2][:40])
    out.unlink()
    assert read_records(answer_file(p, inputs), Answer) == answers
    assert len(read_records(p.dir / "answers" / "mine.distilled-rar_2step.traces.jsonl", Trace)) == 5  # none twice

    # A method of the run on the base model; another input under the same name is refused, not mixed in.
    base = read_records(answer_file(p, inputs, "rar_2step"), Answer)
    assert all(a.system == "rar_2step" and a.confidence is not None for a in base)
    write_questions(inputs, QUESTIONS[:3])
    with pytest.raises(UserError, match=r"mine.jsonl changed since .* answered it with distilled:rar_2step: pass "
                                        r"--output DIR"):
        answer_file(p, inputs)
    assert len(read_records(answer_file(p, inputs, out_dir=tmp_path / "new"), Answer)) == 3
    with pytest.raises(UserError, match="unknown system 'distilled:rar_2stp': did you mean 'distilled:rar_2step'"):
        answer_file(p, inputs, "distilled:rar_2stp")


def test_inputs_in_the_tasks_format_and_their_mistakes(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,gold\n2,3,5\n10,4,14\n")
    task = TASKS["dataset"](path=str(rows), question="What is {a} plus {b}?", answer="gold", answer_type="number",
                            test_ratio=0.5)
    new = tmp_path / "new.csv"
    new.write_text("a,b\n7,8\n")  # no gold field: new inputs need none
    (ex,) = read_inputs(task, new)
    assert ex.question == "What is 7 plus 8?" and ex.answer is None and ex.metadata == {"row": 1}
    new.write_text("a,c\n7,8\n")
    with pytest.raises(UserError, match="new.csv row 1"):
        read_inputs(task, new)
    lookup = TASKS["lookup"]()
    (tmp_path / "q.jsonl").write_text(json.dumps({"text": "How many?"}) + "\n")
    with pytest.raises(UserError, match="q.jsonl row 1 has no 'question' text: task 'lookup' reads each row's 'question'"):
        read_inputs(lookup, tmp_path / "q.jsonl")
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": QUESTIONS[0]}) + "\n")
    with pytest.raises(UserError, match="q.jsonl row 1 has no 'num_words': task 'last_letter'"):
        read_inputs(TASKS["last_letter"](), tmp_path / "q.jsonl")
    with pytest.raises(UserError, match="input file .*missing.jsonl not found"):
        read_inputs(lookup, tmp_path / "missing.jsonl")


def test_answer_killed_with_sigkill_resumes_with_nothing_lost_or_twice(tmp_path, tiny):  # noqa: F811
    """The command as a user runs it, on the distilled checkpoint a run left on disk, killed mid-file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    p = make(tmp_path, tiny)
    p.run()
    questions = [f"Take the last letters of the words in \"Word{i} Other{i}\" and concatenate them." for i in range(300)]
    inputs = write_questions(tmp_path / "many.jsonl", questions)
    cmd = [sys.executable, "-m", "sys2distill", "answer", str(p.dir), "--input", str(inputs), "--system",
           "distilled:rar_2step", "generation.chunk_sequences=8"]
    traces = p.dir / "answers" / "many.distilled-rar_2step.traces.jsonl"
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not traces.exists() or traces.read_bytes().count(b"\n") < 16):
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    written = traces.read_bytes().count(b"\n")
    assert 16 <= written < 300, written  # killed part-way
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    ids = [t.example_id for t in read_records(traces, Trace)]
    assert sorted(ids) == [f"input-{i:05d}" for i in range(1, 301)]  # each input once: none lost, none twice
    answers = read_records(p.dir / "answers" / "many.distilled-rar_2step.jsonl", Answer)
    assert [a.row for a in answers] == list(range(1, 301)) and "300 inputs" in r.stdout

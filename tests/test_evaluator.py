"""Evaluation rows: one per (system, item), scored once; the table's line is a function of them."""

import json

import pytest

from scoring import score
from sys2distill.evaluator import EvalRow, score_rows
from sys2distill.records import Example, Step, Trace, read_records, write_jsonl
from sys2distill.tasks import REGISTRY


def tr(ex, answer, tokens=3, j=0):
    return Trace(ex, "m", j, [Step("answer", [{"role": "user", "content": "q"}], str(answer), 1, tokens)], str(answer),
                 answer, tokens)


def test_score_accuracy_tokens_failures_and_groups():
    task = REGISTRY["coin_flip"](train_size=1, test_size=1)
    exs = [Example("a", "q", "yes", {"group": "biased"}), Example("b", "q", "no", {"group": "biased"}),
           Example("c", "q", "yes", {"group": "unbiased"}), Example("d", "q", "no", {"group": "unbiased"})]
    traces = {"a": [tr("a", "Yes", 2)], "b": [tr("b", "yes", 4)], "c": [tr("c", None, 6)], "d": [tr("d", "no", 8)]}
    s = score(task, exs, traces, "system1", "System 1", "system1")
    assert s.accuracy == 0.5 and s.correct == 2 and s.mean_tokens == 5.0 and s.extraction_failures == 0.25 and s.n == 4
    assert s.by_group == {"biased": 0.5, "unbiased": 0.5}
    lo, hi = s.accuracy_ci
    assert 0.0 < lo < 0.5 < hi < 1.0


def test_rows_carry_gold_steps_answer_and_verdict_and_load_with_datasets(tmp_path):
    task = REGISTRY["gsm8k"](train_size=1, test_size=1)
    exs = [Example("a", "q", "18"), Example("b", "q", "7")]
    traces = {"a": [tr("a", "18", 5)], "b": [tr("b", "3", 9)]}
    samples = {"a": [tr("a", "3", 10, 0), tr("a", "18", 20, 1), tr("a", "18", 30, 2)],
               "b": [tr("b", "7", 5, 0), tr("b", None, 5, 1), tr("b", "2", 5, 2)]}
    rows = score_rows(task, exs, traces, system="cot", label="CoT", kind="system2", method="cot", model="m",
                      ks=[1, 3], samples=samples)
    a, b = rows
    assert (a.gold, a.answer, a.correct, a.tokens, a.rule) == ("18", "18", True, 5, f"gsm8k v{task.version}")
    assert (b.answer, b.correct) == ("3", False) and a.steps[0]["output"] == "18"
    assert a.samples == ["3", "18", "18"] and a.votes == [
        {"k": 1, "answer": "3", "correct": False, "tied": False, "tokens": 10},
        {"k": 3, "answer": "18", "correct": True, "tied": False, "tokens": 60}]
    assert b.votes[1] == {"k": 3, "answer": "7", "correct": True, "tied": True, "tokens": 15}  # tie: first sampled
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows)
    assert read_records(path, EvalRow) == rows
    import datasets

    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded.num_rows == 2 and loaded[0]["gold"] == "18" and loaded[1]["votes"][1]["correct"] is True


def test_fidelity_skips_inputs_without_a_system2_majority():
    task = REGISTRY["last_letter"](train_size=1, test_size=1)
    exs = [Example("a", "q", "rb"), Example("b", "q", "xx"), Example("c", "q", "zz")]
    distilled = {"a": [tr("a", "rb")], "b": [tr("b", "xx")], "c": [tr("c", "zz")]}
    system2 = {"a": [tr("a", "RB", j=0), tr("a", "rb", j=1), tr("a", "q", j=2)],
               "b": [tr("b", "yy", j=0), tr("b", "yy", j=1)],
               "c": [tr("c", "p", j=0), tr("c", "q", j=1)]}  # tie: left out
    rows = score_rows(task, exs, distilled, system="distill_x", label="D", kind="distilled", method="system1", model="m",
                      system2_samples=system2)
    assert [r.agrees_with_system2 for r in rows] == [True, False, None]
    assert score(task, exs, distilled, "distill_x", "D", "distilled", system2_samples=system2).fidelity == pytest.approx(0.5)
    assert score(task, exs[2:], {"c": distilled["c"]}, "d", "D", "distilled", system2_samples=system2).fidelity is None


def test_a_twenty_line_script_reproduces_results_from_rows(tmp_path):
    """Issue 18's "done when": accuracy, its interval and the token mean follow from rows.jsonl alone."""
    task = REGISTRY["coin_flip"](train_size=1, test_size=1)
    exs = [Example(str(i), "q", "yes" if i % 3 else "no") for i in range(30)]
    traces = {str(i): [tr(str(i), "yes", tokens=i)] for i in range(30)}
    rows = score_rows(task, exs, traces, system="system1", label="System 1", kind="system1", method="system1", model="m")
    write_jsonl(tmp_path / "rows.jsonl", rows)
    from scipy.stats import binomtest

    mine = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    k = sum(r["correct"] for r in mine)
    ci = binomtest(k, len(mine)).proportion_ci(method="wilson")
    s = score(task, exs, traces, "system1", "System 1", "system1")
    assert (s.accuracy, s.mean_tokens) == (k / 30, sum(r["tokens"] for r in mine) / 30)
    assert s.accuracy_ci == pytest.approx((ci.low, ci.high))

"""Pairwise judge task, Branch-Solve-Merge, the order-swap filter and the judge's metrics."""

import gzip
import json

import pytest

from scripted import ScriptedBackend
from sys2distill.backends.base import SamplingParams
from sys2distill.config import load_config
from sys2distill.distill_data import build_records
from sys2distill.errors import UserError
from scoring import score
from sys2distill.filters import REGISTRY as FILTERS
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.methods.bsm import parse_plan, parse_scores
from sys2distill.pipeline import Pipeline
from sys2distill.records import Example, Trace
from sys2distill.tasks.pairwise_judge import (PairwiseJudge, _side, consistent, parse_verdict, read_hh_rlhf,
                                              read_mt_bench_human, read_oasst2_trees)


@pytest.mark.parametrize("text, verdict", [
    ("[[A]]", "A"), ("Final verdict: [[B]]", "B"), ("[[C]]", "C"), ("[[tie]]", "C"), ("[[ b ]]", "B"),
    ("At first [[A]] seemed right, but on reflection [[B]]", "B"),  # the last explicit verdict wins
    ("My verdict is [B].", "B"),
    ("Verdict: Assistant A", "A"), ("The winner is Assistant B.", "B"), ("final verdict: B", "B"),
    ("Assistant A's response is better because it is polite.", "A"),
    ("Overall, Assistant B is clearly better.", "B"), ("Response A is more helpful than B.", "A"),
    ("I prefer response B", "B"),
    ("It's a tie.", "C"), ("Both are equally good.", "C"),
    ("Assistant A is helpful. Assistant B is also helpful.", None), ("", None), ("A B C", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_swap_logic():
    # Same response in both orders (A then B, or tie twice) is consistent; same letter is not.
    assert consistent("A", "B") and consistent("B", "A") and consistent("C", "C")
    assert not consistent("A", "A") and not consistent("B", "B") and not consistent("A", "C")
    assert not consistent(None, "B") and not consistent("A", None)


def pair_examples(n: int, testset: str = "mt_bench") -> list[Example]:
    out = []
    for i in range(n):
        for order, gold in (("ab", "A"), ("ba", "B")):
            out.append(Example(id=f"p{i}-{order}", question=f"q{i}", answer=gold,
                               metadata={"pair_id": f"p{i}", "order": order, "response_a": "x", "response_b": "y",
                                         "groups": [testset, f"{testset}/writing" if i % 2 else f"{testset}/math"]}))
    return out


def traces_for(examples, verdicts, method="bsm"):
    """One trace per example whose final output is the given verdict text."""
    return {ex.id: [Trace(ex.id, method, 0, [], v, parse_verdict(v), 7)] for ex, v in zip(examples, verdicts)}


def test_always_a_judge_is_100_percent_inconsistent():
    task, examples = PairwiseJudge(train_size=1, test_size=1), pair_examples(4)
    s = score(task, examples, traces_for(examples, ["[[A]]"] * 8), "system1", "System 1", "system1")
    assert s.inconsistent == 1.0 and s.accuracy == 0.5  # right on every "ab", wrong on every "ba"
    assert s.inconsistent_by_group == {"mt_bench": 1.0, "mt_bench/math": 1.0, "mt_bench/writing": 1.0}
    perfect = score(task, examples, traces_for(examples, ["[[A]]", "[[B]]"] * 4), "bsm", "BSM", "system2")
    assert perfect.inconsistent == 0.0 and perfect.accuracy == 1.0
    # A consistent tie is consistent, but a tie never agrees with a human label.
    ties = score(task, examples, traces_for(examples, ["[[C]]"] * 8), "bsm", "BSM", "system2")
    assert ties.inconsistent == 0.0 and ties.accuracy == 0.0
    mixed = score(task, examples, traces_for(examples, ["[[A]]", "[[B]]", "[[A]]", "[[A]]"] * 2), "bsm", "BSM", "system2")
    assert mixed.inconsistent == 0.5 and mixed.by_group["mt_bench/math"] == 1.0 and mixed.by_group["mt_bench/writing"] == 0.5


def test_filter_keeps_only_order_consistent_pairs_with_reasons():
    examples = pair_examples(5)
    verdicts = ["[[A]]", "[[B]]",  # p0 consistent: response 1 both times
                "[[A]]", "[[A]]",  # p1 flips with the order
                "[[C]]", "[[C]]",  # p2 tie in both orders
                "no idea", "[[B]]",  # p3 no verdict in one order
                "[[B]]", "[[A]]"]  # p4 consistent: response 2
    decisions = {d.example_id: d for d in FILTERS["perturbation_consistency"]().apply(examples, traces_for(examples, verdicts), None)}
    assert [ex.id for ex in examples if decisions[ex.id].kept] == ["p0-ab", "p0-ba", "p4-ab", "p4-ba"]
    assert decisions["p0-ba"].answer == "b" and decisions["p4-ab"].answer == "b"
    assert decisions["p1-ab"].reason == "verdict flips when responses swap"
    assert decisions["p2-ab"].reason == "tie in both orders"
    assert decisions["p3-ab"].reason == "no verdict in this order" and decisions["p3-ba"].reason == "no verdict in the swapped order"
    ties_kept = FILTERS["perturbation_consistency"](keep_ties=True).apply(examples, traces_for(examples, verdicts), None)
    assert sum(d.kept for d in ties_kept) == 6
    lone = FILTERS["perturbation_consistency"]().apply(examples[:1], traces_for(examples[:1], ["[[A]]"]), None)
    assert lone[0].reason == "no swapped partner" and not lone[0].kept
    # Distilled target: the verdict alone, on the System 1 judge prompt.
    task = PairwiseJudge(train_size=1, test_size=1)
    records = build_records(examples, traces_for(examples, verdicts), list(decisions.values()),
                            METHODS["system1"](task), "answer_only")
    assert [r.completion[0]["content"] for r in records] == ["[[A]]", "[[B]]", "[[B]]", "[[A]]"]
    assert records[0].prompt[0]["content"].startswith("Please act as an impartial judge")


def test_splits_by_question_both_orders_unlabeled_train():
    task = PairwiseJudge(train_size=60, test_size=20, eval_size=10, seed=3)
    train, test = task.load("train"), task.load("test")
    assert len(train) == 120 and len(test) == 2 * (20 + 10)
    assert all(ex.answer is None for ex in train)
    first_turn = lambda ex: ex.question.split("\n\nAssistant:")[0]  # noqa: E731
    assert not {first_turn(ex) for ex in train} & {first_turn(ex) for ex in test}
    by_id = {ex.id: ex for ex in test}
    for ex in test:
        other = by_id[ex.id[:-2] + ("ba" if ex.id.endswith("ab") else "ab")]
        assert (ex.metadata["response_a"], ex.metadata["response_b"]) == (other.metadata["response_b"], other.metadata["response_a"])
        assert {ex.answer, other.answer} == {"A", "B"}
    assert {ex.metadata["testset"] for ex in test} == {"hh_rlhf", "mt_bench"}
    # Every MT-bench pair gets its MT-bench category, joined by question text.
    assert all(len(ex.metadata["groups"]) == 2 and not ex.metadata["groups"][1].endswith("unknown")
               for ex in test if ex.metadata["testset"] == "mt_bench")
    # HH-RLHF's chosen answer is not always shown first in training (both orders, shuffled).
    assert {ex.id[-2:] for ex in train[:10]} == {"ab", "ba"}
    assert task.load("test") == test  # seeded


def test_readers_and_bad_inputs(tmp_path):
    pairs = read_hh_rlhf()
    assert len(pairs) > 2000 and all(p["response_1"] != p["response_2"] for p in pairs)
    with pytest.raises(UserError, match="fewer than the 5000 asked"):
        PairwiseJudge(train_size=5000, test_size=1).load("train")
    with pytest.raises(UserError, match="needs task.options.path"):
        PairwiseJudge(source="oasst2")
    with pytest.raises(UserError, match="unknown pairwise_judge eval set 'mtbench'"):
        PairwiseJudge(eval_sets=["mtbench"])


def test_mt_bench_human_judgments_format(tmp_path):
    """The public lmsys/mt_bench_human_judgments rows: several judges per pair, both model orders, ties."""
    q81 = "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions."

    def row(a, b, winner, judge, turn=1, qid=81):
        conv = lambda m: [{"role": "user", "content": q81}, {"role": "assistant", "content": f"answer of {m}"}]  # noqa: E731
        return {"question_id": qid, "model_a": a, "model_b": b, "winner": winner, "judge": judge, "turn": turn,
                "conversation_a": conv(a), "conversation_b": conv(b)}

    rows = [row("gpt-4", "vicuna", "model_a", "author_1"), row("vicuna", "gpt-4", "model_b", "author_2"),  # gpt-4 twice
            row("gpt-4", "vicuna", "model_b", "author_3"),  # one dissent: majority still gpt-4
            row("gpt-4", "vicuna", "model_b", "author_4", turn=2),  # second turns are skipped
            row("llama", "alpaca", "tie", "author_1"), row("llama", "alpaca", "model_a", "author_2"),
            row("alpaca", "llama", "model_a", "author_3")]  # llama 1, alpaca 1, tie 1: a tie, removed
    path = tmp_path / "judgments.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs = read_mt_bench_human(path)
    assert len(pairs) == 1
    p = pairs[0]
    better = p["response_1"] if p["label"] == 1 else p["response_2"]
    assert better == "answer of gpt-4" and p["category"] == "writing"
    path.write_text('{"question_id": 81}\n')
    with pytest.raises(UserError, match="line 1 is not an MT-bench human judgment"):
        read_mt_bench_human(path)


def test_oasst2_trees_format(tmp_path):
    def reply(text, rank, role="assistant"):
        return {"message_id": text, "text": text, "role": role, "rank": rank, "replies": []}

    trees = [
        {"message_tree_id": "t1", "tree_state": "ready_for_export",
         "prompt": {"message_id": "p1", "text": "How do I boil an egg?", "role": "prompter", "lang": "en",
                    "replies": [reply("second best", 1), reply("best", 0), reply("worst", 2), reply("unranked", None)]}},
        {"message_tree_id": "t2", "prompt": {"text": "Wie geht's?", "role": "prompter", "lang": "de",
                                             "replies": [reply("gut", 0), reply("schlecht", 1)]}},
    ]
    path = tmp_path / "oasst2.trees.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in trees) + "\n")
    pairs = read_oasst2_trees(path)
    assert [(p["response_1"], p["response_2"]) for p in pairs] == [
        ("best", "second best"), ("best", "worst"), ("second best", "worst")]
    assert all(p["label"] == 1 and p["question"] == "How do I boil an egg?" for p in pairs)
    task = PairwiseJudge(train_size=3, test_size=3, source="oasst2", path=str(path), eval_sets=[])
    assert len(task.load(_side("How do I boil an egg?"))) == 2 * 3  # the question's side holds all its pairs
    path.write_text('{"id": 1}\n')
    with pytest.raises(UserError, match="not an OASST2 message tree"):
        read_oasst2_trees(path)


def test_hh_rlhf_pairs_share_the_dialogue(tmp_path):
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me\n\nAssistant: Sure, how?",
           "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me\n\nAssistant: No."}
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(row) + "\n")
    (p,) = read_hh_rlhf(path)
    assert p["question"] == "User: hi\n\nAssistant: hello\n\nUser: help me"
    assert (p["response_1"], p["response_2"], p["label"]) == ("Sure, how?", "No.", 1)


def test_parse_plan_and_scores():
    plan = ("Evaluation Plan:\n1. **Relevance**: Does the response address the question?\n"
            "2. Accuracy - Are the facts right?\n\n- Harmlessness: Does it avoid harm?\n"
            "4. Consider whether the tone is polite\n5. Depth: detail\n6. Extra: ignored")
    assert parse_plan(plan, 5) == [("Relevance", "Does the response address the question?"),
                                   ("Accuracy", "Are the facts right?"), ("Harmlessness", "Does it avoid harm?"),
                                   ("Consider whether the tone", "Consider whether the tone is polite"),
                                   ("Depth", "detail")]
    assert len(parse_plan(plan, 2)) == 2 and parse_plan("", 5) == []
    assert parse_scores("Assistant A: 4/5\nAssistant B: 2 out of 5") == (4, 2)
    assert parse_scores("A gets 3.\nB gets 5.") == (3, 5)
    assert parse_scores("Score: 10") is None and parse_scores("A: 4") is None


def judge_reply(prompt: str, j: int) -> str:
    if prompt.startswith("We want to evaluate"):
        return "1. Relevance: on topic?\n2. Safety: harmless?\n3. Clarity: clear?"
    if prompt.startswith("You are given a user question"):
        return "4\n2" if "Relevance" in prompt else "3\n3"
    return "Summary. [[A]]"


def test_bsm_trace_batches_each_stage():
    task = PairwiseJudge(train_size=1, test_size=1)
    examples = pair_examples(2)
    backend = ScriptedBackend(judge_reply)
    bsm = METHODS["bsm"](task, options={"max_criteria": 2})
    traces = bsm.run(examples, backend, SamplingParams(n=2, temperature=0.7, max_tokens=20, seed=1))
    assert len(backend.calls) == 3  # branch, solve, merge: one batched call each
    assert len(backend.calls[0][0]) == 4 and len(backend.calls[1][0]) == 4 * 2 * 2 and len(backend.calls[2][0]) == 4 * 2
    t = traces[1][1]
    assert (t.example_id, t.sample) == ("p0-ba", 1)
    assert [s.name for s in t.steps] == ["branch", "solve: Relevance", "solve: Safety", "merge"]
    assert t.answer == "A" and t.tokens == sum(s.completion_tokens for s in t.steps) > 0
    assert "Evaluation of Relevance:\n4\n2" in t.steps[-1].messages[0]["content"]
    assert "combine the 2 points" in t.steps[-1].messages[0]["content"]
    summed = METHODS["bsm"](task, options={"merge": "sum"}).run(examples, ScriptedBackend(judge_reply), SamplingParams(n=1))
    final = summed[0][0]
    assert final.answer == "A" and final.steps[-1].completion_tokens == 0 and "A 10, B 8" in final.final
    with pytest.raises(UserError, match="has no option 'criteria'"):
        METHODS["bsm"](task, options={"criteria": 3})
    with pytest.raises(UserError, match="merge must be"):
        METHODS["bsm"](task, options={"merge": "vote"})


def test_bsm_config_loads_and_bad_method_option(tmp_path):
    cfg = load_config("configs/bsm_judge.yaml", [f"run_dir={tmp_path}/{{name}}"])
    p = Pipeline(cfg)
    assert p.method("bsm").options["max_criteria"] == 3 and p.task.eval_sets == ["mt_bench"]
    with pytest.raises(UserError, match="unknown method 'bsn'"):
        Pipeline(load_config("configs/bsm_judge.yaml", ["method_options={bsn: {max_criteria: 2}}"]))


def test_bsm_pipeline_end_to_end_on_tiny_model(tmp_path, embedded_tokenizer, tiny_model, monkeypatch):
    # A random model writes no verdicts: score its outputs by a coin on their first token so
    # the filter has something to keep; parsing itself is tested above.
    monkeypatch.setattr(PairwiseJudge, "extract_answer", lambda self, text: "AB"[len(text) % 2] if text else None)
    cfg = load_config("configs/bsm_judge.yaml", [
        f"run_dir={tmp_path}/{{name}}", "task.train_size=4", "task.test_size=2", "task.options.eval_size=2",
        "task.options.max_chars=200", "generation.max_tokens=4", "method_options.bsm.solve_max_tokens=3",
        "train.max_steps=1", "train.max_length=512", "evaluate.max_tokens=4", "backend.batch_size=16"])
    p = Pipeline(cfg, loaded_base=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    p.run()
    results = json.loads((p.dir / "results.json").read_text())
    assert [s["label"] for s in results["scores"]] == ["System 1", "CoT zero-shot", "BSM", "Distilled BSM"]
    for s in results["scores"]:
        assert s["n"] == 8 and s["inconsistent"] is not None and set(s["inconsistent_by_group"]) >= {"hh_rlhf", "mt_bench"}
    bsm = results["scores"][2]
    assert bsm["mean_tokens"] > results["scores"][0]["mean_tokens"]  # three stages of tokens
    md = (p.dir / "results.md").read_text()
    assert "human agreement (95% CI)" in md and "% inconsistent" in md and "per category" in md
    assert "MT-bench 64.5 / 21.1 / 2063.1" in md

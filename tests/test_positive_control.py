"""The positive-control pieces: the program-written tasks, their few-shot prompts, the controls and the
answer histogram."""

import json
import re

import pytest

from sys2distill.config import load_config
from sys2distill.errors import UserError
from sys2distill.evaluator import EvalRow
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.pipeline import Pipeline
from sys2distill.records import DistillRecord, read_records
from sys2distill.report import build_results, markdown
from sys2distill.tasks import REGISTRY as TASKS
from sys2distill.tasks.lookup import Lookup
from sys2distill.tasks.numeric import part


@pytest.mark.parametrize("name,options", [("arithmetic", {}), ("arithmetic", {"num_terms": 4, "operators": "+-"}),
                                          ("lookup", {}), ("lookup", {"num_facts": 6})])
def test_generated_splits_are_deterministic_and_disjoint_as_inputs(name, options):
    task = TASKS[name](train_size=200, test_size=120, seed=0, **options)
    train, test = task.load("train"), task.load("test")
    assert [e.question for e in train] == [e.question for e in TASKS[name](train_size=200, test_size=120, **options).load("train")]
    assert len({e.question for e in train}) == 200 and len({e.question for e in test}) == 120  # no repeated input
    exemplars = {ex.question for ex in task.worked_examples(4)}
    # Disjoint as inputs, whatever the seed: train inputs at any seed (bench/demo_study.py's dev items are
    # seed 7) never meet a test item of any seed, nor a few-shot exemplar.
    other = TASKS[name](train_size=200, test_size=120, seed=7, **options)
    assert [e.question for e in other.load("train")] != [e.question for e in train]
    test_any = {e.question for e in test} | {e.question for e in other.load("test")}
    train_any = {e.question for e in train} | {e.question for e in other.load("train")}
    assert not (train_any & test_any) and not (exemplars & (train_any | test_any))
    assert {part(q) for q in train_any} == {"train"} and {part(q) for q in test_any} == {"test"}
    assert all(e.answer is None for e in train) and all(e.answer is not None for e in test)  # labels: test only
    task.reveal_train_labels = True
    for ex in task.load("train")[:50] + test[:50]:
        assert task.is_correct(task.extract_answer(f"The answer is {ex.answer}."), ex.answer)
        if name == "arithmetic":  # the gold is the expression's value, left to right
            assert int(ex.answer) == eval(ex.question.removeprefix("What is ").rstrip("?"))
        else:  # the asked person's number, and no other person has it
            m = ex.metadata
            asked = re.search(r"does (\w+) have", ex.question).group(1)
            assert asked == m["names"][m["asked"]] and ex.answer == str(m["values"][m["asked"]])
            assert len(set(m["values"])) == len(m["values"]) == options.get("num_facts", 4)


def test_lookup_people_never_cross_the_split_and_worked_examples_are_solved():
    task = Lookup(train_size=200, test_size=200)
    train_people = {n for e in task.load("train") for n in e.metadata["names"]}
    test_people = {n for e in task.load("test") for n in e.metadata["names"]}
    assert train_people and test_people and not train_people & test_people
    for ex in task.worked_examples(4):
        asked = re.search(r"does (\w+) have", ex.question).group(1)
        assert ex.reasoning.startswith(f"The question asks about {asked}. {asked} has {ex.answer} ")
        assert f"{asked} has {ex.answer} " in ex.question and asked not in test_people
    arithmetic = TASKS["arithmetic"](num_terms=3)
    assert [e.reasoning for e in arithmetic.worked_examples(2)] == ["2 + 9 = 11. 11 + 5 = 16.", "9 + 4 = 13. 13 + 3 = 16."]


def test_a_split_larger_than_its_part_of_the_space_is_one_clear_error():
    # 1-9, two terms: 81 sums, about a quarter of them test inputs.
    with pytest.raises(UserError, match=r"cannot draw 60 distinct test items for arithmetic: these options allow about "
                                        r"81 inputs, 25% of them test inputs; lower task.test_size"):
        TASKS["arithmetic"](test_size=60, num_terms=2).load("test")
    for bad, match in (({"num_terms": 1}, "num_terms must be an integer of at least 2"),
                       ({"operators": "*"}, "operators must be a string of"),
                       ({"min_value": 9, "max_value": 1}, "min_value=9 is above max_value=1")):
        with pytest.raises(UserError, match=match):
            TASKS["arithmetic"](**bad)
    with pytest.raises(UserError, match="6 facts need 6 distinct values"):
        Lookup(num_facts=6, min_value=1, max_value=5)


def test_test_items_from_a_file_and_train_inputs_avoid_them(tmp_path):
    dev = Lookup(train_size=30, seed=7)
    dev.reveal_train_labels = True
    items = dev.load("train")
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps({"question": e.question, "answer": e.answer}) + "\n" for e in items))
    task = Lookup(train_size=300, test_size=20, path=str(path), seed=7)  # the same seed: its train side would hold them
    test = task.load("test")
    assert [(e.question, e.answer) for e in test] == [(e.question, e.answer) for e in items[:20]]
    assert not {e.question for e in task.load("train")} & {e.question for e in items}
    with pytest.raises(UserError, match=r"has 30 items, fewer than task.test_size=40: set task.test_size=30"):
        Lookup(test_size=40, path=str(path)).load("test")
    path.write_text(json.dumps({"question": "How many?", "answer": "many"}) + "\n")
    with pytest.raises(UserError, match="item 1 has the answer 'many', which is not a number"):
        Lookup(path=str(path)).check_data()


def test_a_prompt_override_writes_the_exemplars_inline_and_turns_refuse_it():
    task = Lookup(train_size=2, test_size=2)
    ex = task.load("test")[0]
    inline = METHODS["cot_fewshot"](task, prompts={"answer": "Solve these.\n{exemplars}Q: {question}\nA:"})
    (turn,) = inline.prompt("answer", ex)  # the override is used, with the task's own exemplars in it
    assert turn["content"].startswith("Solve these.\nQ: ") and task.worked_examples(4)[0].question in turn["content"]
    with pytest.raises(UserError, match="prompts.cot_fewshot.answer is a template of the inline layout: set "
                                        "method_options.cot_fewshot.layout to inline"):
        METHODS["cot_fewshot"](task, prompts={"answer": "{exemplars}Q: {question}"}, options={"layout": "turns"})


def test_few_shot_system1_and_cot_differ_in_the_reasoning_alone():
    task = Lookup(train_size=2, test_size=2)
    ex = task.load("test")[0]
    cot, direct = METHODS["cot_fewshot"](task), METHODS["direct_fewshot"](task)
    c, d = cot.prompt("answer", ex), direct.prompt("answer", ex)
    assert [m["role"] for m in c] == ["user", "assistant"] * 4 + ["user"] and len(d) == len(c)
    assert [m["content"] for m in c[::2]] == [m["content"] for m in d[::2]]  # the same questions, same order
    for shown, bare, worked in zip(c[1::2], d[1::2], task.worked_examples(4)):
        assert shown["content"] == f"{worked.reasoning} The answer is {worked.answer}."
        assert bare["content"] == f"The answer is {worked.answer}."
    assert c[-1]["content"] == ex.question
    assert direct.system1 and not cot.system1 and METHODS["system1"].system1
    inline = METHODS["cot_fewshot"](task, options={"layout": "inline", "shots": 2}).prompt("answer", ex)
    assert len(inline) == 1 and inline[0]["content"].count("\nA: The question asks about") == 2
    assert inline[0]["content"].endswith(f"Q: {ex.question}\nA:")
    with pytest.raises(UserError, match="layout must be one of auto, turns, inline"):
        METHODS["direct_fewshot"](task, options={"layout": "rows"})


# -- the controls ---------------------------------------------------------------------------------

OVERRIDES = ["task.name=lookup", "task.train_size=8", "task.test_size=4", "generation.num_samples=2",
             "generation.temperature=0", "generation.max_tokens=4", "distill.methods=[direct_fewshot,cot_fewshot]",
             "distill.target=answer_only", "train.max_steps=1", "train.batch_size=4",
             "evaluate.systems=[system1,direct_fewshot,cot_fewshot]", "evaluate.max_tokens=4",
             "evaluate.fidelity_samples=0", "backend.batch_size=8"]


@pytest.fixture
def tiny(embedded_tokenizer, tiny_model, monkeypatch):
    # A random model writes random tokens: read the token count of any output as its answer, so the
    # filter keeps inputs (greedy samples agree) and the kept answers are not the labels.
    monkeypatch.setattr(Lookup, "extract_answer", lambda self, text: str(len(text.split())))
    return tiny_model(embedded_tokenizer), embedded_tokenizer


def make(tmp_path, tiny, *extra):
    return Pipeline(load_config(None, [*OVERRIDES, f"run_dir={tmp_path}/{{name}}", *extra]), loaded_base=tiny)


def test_controls_train_on_shuffled_and_gold_answers_of_the_same_kept_inputs(tmp_path, tiny):
    p = make(tmp_path, tiny)
    p.run()
    d = p.dir
    assert not (d / "distill" / "controls").exists() and not (d / "train" / "controls").exists()  # off by default
    stamps = {f: f.stat().st_mtime_ns for f in [*d.glob("generate/*.jsonl"), *d.glob("train/*/DONE.json")]}
    # Added to a finished run: only the controls' data, models and rows are made.
    p = make(tmp_path, tiny, "distill.controls=[shuffled,gold]")
    results = p.run()
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps
    kept = read_records(d / "distill" / "cot_fewshot.jsonl", DistillRecord)
    shuffled = read_records(d / "distill" / "controls" / "cot_fewshot-shuffled.jsonl", DistillRecord)
    gold = read_records(d / "distill" / "controls" / "cot_fewshot-gold.jsonl", DistillRecord)
    assert [r.id for r in shuffled] == [r.id for r in gold] == [r.id for r in kept] and len(kept) == 8
    assert [r.prompt for r in gold] == [r.prompt for r in kept]
    content = lambda rs: [r.completion[0]["content"] for r in rs]  # noqa: E731
    assert sorted(content(shuffled)) == sorted(content(kept))  # the kept answers, permuted
    labeled = Lookup(train_size=8, test_size=4)
    labeled.reveal_train_labels = True
    assert content(gold) == [e.answer for e in labeled.load("train")]  # the train labels: only here
    assert content(kept) != content(gold)  # the pipeline's own targets never are
    assert all(r.metadata["reads_train_labels"] for r in gold) and not any(r.metadata["reads_train_labels"] for r in shuffled)
    assert not list((d / "distill" / "controls").glob("direct_fewshot*"))  # a System 1 entry has no controls
    for control in ("shuffled", "gold"):
        assert (d / "train" / "controls" / f"cot_fewshot-{control}" / "DONE.json").exists()
    rows = read_records(d / "evaluate" / "rows.jsonl", EvalRow)
    controls = {(r.system, r.kind, r.control, r.label) for r in rows if r.kind == "control"}
    assert controls == {(f"control_{c}_cot_fewshot", "control", c, f"Distilled CoT few-shot, {c} answers (control)")
                        for c in ("shuffled", "gold")}
    v = results.verdicts[0]
    assert v.distilled == "Distilled CoT few-shot" and len(results.verdicts) == 1  # Distill System 1 has none
    assert {c.baseline for c in v.against} >= {"Distill System 1 few-shot", "Distilled CoT few-shot, shuffled answers "
                                               "(control)", "Distilled CoT few-shot, gold answers (control)"}
    assert v.ceiling[0] == "Distilled CoT few-shot, gold answers (control)" and "gold-label ceiling" in v.sentence
    assert "Controls (distill.controls) are diagnostics" in (d / "results.md").read_text()


def _row(system, kind, answer, gold, i):
    return EvalRow(id=f"t{i}", system=system, label=system, kind=kind, method="system1", source=None, model="m",
                   gold=gold, steps=[], final=answer or "", answer=answer, correct=answer == gold, tokens=2, rule="r v1")


def test_answer_histogram_and_the_best_system1_as_baseline():
    golds = [str(i % 5) for i in range(20)]
    rows = [_row("system1", "system1", None, g, i) for i, g in enumerate(golds)]
    rows += [_row("direct_fewshot", "system1", "3", g, i) for i, g in enumerate(golds)]  # one answer throughout
    rows += [_row("cot_fewshot", "system2", g if i % 2 else "1", g, i) for i, g in enumerate(golds)]
    results = build_results(rows, decisions={}, checks=None, trained={}, stages={},
                            info={"task": "lookup", "model": "m", "extraction_rule": "r", "task_version": 1,
                                  "config": {"evaluate": {}}, "versions": {}})
    by = {s.system: s for s in results.scores}
    assert by["system1"].top_answer is None and by["system1"].distinct_answers == 0
    assert by["direct_fewshot"].top_answer == ("3", 1.0) and by["direct_fewshot"].distinct_answers == 1
    assert by["cot_fewshot"].top_answer == ("1", 0.6) and by["cot_fewshot"].distinct_answers == 5
    assert results.constant_baseline == ("0", 0.2) and results.gold_answers == 5
    # System 1 few-shot (20%) beats zero-shot (0%): it is the System 1 every system is paired with.
    assert {c.baseline for c in results.comparisons} == {"direct_fewshot"}
    md = markdown(results)
    assert "## Answers" in md and "| gold | “0” (20.0%) | 5 | |" in md and "| direct_fewshot | “3” (100.0%) | 1 | 0.0% |" in md


def test_control_targets_are_a_seeded_shuffle_and_the_gold_labels():
    from sys2distill.distill_data import control_records
    from sys2distill.records import Example

    records = [DistillRecord(id=f"x{i}", prompt=[{"role": "user", "content": f"q{i}"}],
                             completion=[{"role": "assistant", "content": str(i)}],
                             metadata={"method": "cot_fewshot", "answer": str(i), "votes": {str(i): 8}, "agreement": 1.0,
                                       "source_trace_ids": [], "target": "answer_only"}) for i in range(12)]
    targets = lambda rs: [r.completion[0]["content"] for r in rs]  # noqa: E731
    a, again, other = (control_records(records, "shuffled", seed=s) for s in (0, 0, 1))
    assert sorted(targets(a)) == sorted(targets(records)) and targets(a) != targets(records)  # permuted, not kept
    assert targets(a) == targets(again) and targets(a) != targets(other)  # seeded
    # A control's record says what it trained on; the vote it replaced is not carried along.
    assert all(set(r.metadata) == {"method", "control", "target", "reads_train_labels"} for r in a)
    gold = {f"x{i}": Example(id=f"x{i}", question=f"q{i}", answer=str(100 + i)) for i in range(12)}
    g = control_records(records, "gold", seed=0, gold=gold, task=Lookup(train_size=8, test_size=4))
    assert targets(g) == [str(100 + i) for i in range(12)] and all(r.metadata["reads_train_labels"] for r in g)


def test_each_distilled_entry_is_paired_with_its_own_controls():
    golds = [str(i % 7) for i in range(28)]

    def rows(system, kind, right, source=None, control=None):
        return [EvalRow(id=f"t{i}", system=system, label=system, kind=kind, method="system1", source=source,
                        model="m", gold=g, steps=[], final="", answer=g if right(i) else "x", correct=right(i),
                        tokens=2, rule="r v1", control=control) for i, g in enumerate(golds)]

    all_rows = rows("system1", "system1", lambda i: i % 4 == 0) + rows("cot", "system2", lambda i: i % 4 != 3)
    for key, ceiling in (("a", lambda i: True), ("b", lambda i: i % 2 == 0)):  # two entries of one method
        all_rows += rows(f"distill_{key}", "distilled", lambda i: i % 4 < 2, source="cot")
        all_rows += rows(f"control_gold_{key}", "control", ceiling, source="cot", control="gold")
    results = build_results(all_rows, decisions={}, checks=None, trained={}, stages={},
                            info={"task": "lookup", "model": "m", "extraction_rule": "r", "task_version": 1,
                                  "config": {"evaluate": {}}, "versions": {}})
    ceilings = {v.distilled: v.ceiling[0] for v in results.verdicts}
    assert ceilings == {"distill_a": "control_gold_a", "distill_b": "control_gold_b"}

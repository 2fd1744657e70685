"""The `dataset` task: files and Hugging Face datasets, templates, splits, answer types that reuse the
built-in rules, and one-line errors for bad input before any model is loaded."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from sys2distill.config import load_config
from sys2distill.errors import UserError
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.pipeline import Pipeline
from sys2distill.tasks import REGISTRY
from sys2distill.tasks.coin_flip import CoinFlip
from sys2distill.tasks.gsm8k import GSM8K
from sys2distill.tasks.pairwise_judge import parse_verdict

Dataset = REGISTRY["dataset"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def maths(tmp_path):
    rows = [{"problem": f"What is {i} + 2?", "topic": "add" if i % 2 else "sum", "solution": f"{i} + 2 = {i + 2}\n#### {i + 2}"}
            for i in range(10)]
    return write_jsonl(tmp_path / "maths.jsonl", rows)


def test_jsonl_rows_template_seeded_ratio_split_and_unlabeled_train(maths):
    t = Dataset(train_size=8, test_size=2, seed=1, path=maths, question="Q: {problem} ({topic})", answer="solution",
                answer_type="number", group="topic")
    test, train = t.load("test"), t.load("train")
    assert {e.metadata["row"] for e in test}.isdisjoint(e.metadata["row"] for e in train)
    assert {e.metadata["row"] for e in test + train} == set(range(1, 11))  # counted from 1, as errors name rows
    assert [e.metadata["row"] for e in test] == sorted(e.metadata["row"] for e in test)  # file order
    line = test[0].metadata["row"] - 1
    assert test[0].question == f"Q: What is {line} + 2? ({'add' if line % 2 else 'sum'})"
    assert test[0].answer == str(line + 2) and test[0].id == f"dataset-test-{line:04d}"
    assert test[0].metadata["group"] in ("add", "sum")  # per-group accuracy in the report
    assert all(e.answer is None for e in train)  # distillation never sees a label
    again = Dataset(train_size=8, test_size=2, seed=1, path=maths, question="{problem}", answer="solution",
                    answer_type="number").load("train")
    assert [e.id for e in again] == [e.id for e in train]  # seeded
    other = Dataset(train_size=8, test_size=2, seed=2, path=maths, answer="solution", answer_type="number",
                    question="{problem}").load("test")
    assert [e.id for e in other] != [e.id for e in test]


def test_csv_parquet_and_a_local_dataset_folder_with_splits(tmp_path):
    import datasets

    rows = [{"text": f"Is {i} even?", "label": i % 2 == 0} for i in range(6)]
    datasets.Dataset.from_list(rows).to_csv(tmp_path / "d.csv")
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "folder").mkdir()
    write_jsonl(tmp_path / "folder" / "train.jsonl", rows[:4])
    write_jsonl(tmp_path / "folder" / "test.jsonl", rows[4:])
    for kwargs in ({"path": str(tmp_path / "d.csv"), "test_path": str(tmp_path / "d.parquet")},
                   {"path": str(tmp_path / "folder"), "test_split": "test"}):  # load_dataset(path, split=...), offline
        t = Dataset(train_size=2, test_size=2, question="{text}", answer="label", answer_type="yes_no", **kwargs)
        test = t.load("test")
        assert [e.answer for e in test] == ["yes", "no"] and test[0].question.endswith("even?")
        assert len(t.load("train")) == 2
    with pytest.raises(UserError, match="the test rows would be the train rows"):
        Dataset(path=str(tmp_path / "folder"), test_split="train", question="{text}", answer="label").load("test")


def test_train_rows_need_no_answer(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"q": f"q{i}"} for i in range(3)])
    test = write_jsonl(tmp_path / "test.jsonl", [{"q": "t", "a": "Paris"}])
    t = Dataset(train_size=3, test_size=1, path=train, test_path=test, question="{q}", answer="a")
    assert t.load("test")[0].answer == "Paris" and len(t.load("train")) == 3
    t.reveal_train_labels = True  # the report's filter precision: labels where train rows have them
    assert [e.answer for e in t.load("train")] == [None, None, None]


def test_number_and_yes_no_are_the_built_in_rules(maths):
    number = Dataset(path=maths, answer="solution", answer_type="number", question="{problem}")
    yes_no = Dataset(path=maths, answer="solution", answer_type="yes_no", question="{problem}")
    for text in ["So 4 + 3 = 7. The answer is 7.", "Final answer: $1,234.50", "It is 18 dollars", "no number"]:
        assert number.extract_answer(text) == GSM8K().extract_answer(text)
    assert number.correct("$7.00", type("E", (), {"answer": "7"})()) and number.extraction_rule == GSM8K.extraction_rule
    for text in ["Yes, it is.", "The answer is no.", "No one flips it, so it is still heads up.", "maybe"]:
        assert yes_no.extract_answer(text) == CoinFlip().extract_answer(text)
    assert yes_no.extraction_rule == CoinFlip.extraction_rule


def test_gsm8k_is_a_preset_of_the_dataset_task():
    preset = GSM8K(train_size=5, test_size=5)
    data = preset.data_dir
    plain = Dataset(train_size=5, test_size=5, path=str(data / "train.jsonl"), test_path=str(data / "test.jsonl"),
                    question="{question}", answer="answer", answer_type="number")
    a, b = preset.load("test"), plain.load("test")
    assert [(e.question, e.answer, e.metadata["row"]) for e in a] == [(e.question, e.answer, e.metadata["row"]) for e in b]
    # Train inputs: the same rows, sampled with the task's name in the seed (the ids GSM8K runs always had).
    assert sorted(i for i, _ in preset.rows("train")) == sorted(i for i, _ in plain.rows("train"))
    assert isinstance(preset, Dataset) and a[0].id == "gsm8k-test-0000" and a[0].answer == "18"


@pytest.mark.parametrize("text, answer", [
    ("The answer is (B) Paris.", "B"),
    ("Let me think.\nA. London\nB. Paris\nSo the right option is C.", "C"),
    ("A coin is heads up, so I pick option D", "D"),
    ("**B**", "B"),
    ("I think it is Paris.", None),  # per-row option texts are answered by letter only
])
def test_choice_by_letter_over_each_rows_options(tmp_path, text, answer):
    rows = [{"q": "Capital of France?", "opts": ["London", "Paris", "Rome", "Oslo"], "gold": g} for g in (1, "B", "Paris")]
    t = Dataset(train_size=1, test_size=2, test_ratio=0.5, path=write_jsonl(tmp_path / "c.jsonl", rows),
                question="{q}\n{options}", answer="gold", answer_type="choice", choices="opts")
    test = t.load("test")
    assert test[0].question == "Capital of France?\nA. London\nB. Paris\nC. Rome\nD. Oslo"
    assert {e.answer for e in test} == {"B"}  # an index, a letter and the option text all mean B
    assert t.extract_answer(text) == answer


def test_choice_from_a_fixed_list_exact_and_regex(tmp_path):
    rows = [{"review": f"r{i}", "sentiment": s} for i, s in enumerate(["Positive", "negative", "neutral", "positive"])]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    t = Dataset(train_size=2, test_size=2, test_ratio=0.5, path=path, question="{review}", answer="sentiment",
                answer_type="choice", choices=["positive", "negative", "neutral"])
    assert {e.answer for e in t.load("test")} <= {"positive", "negative", "neutral"}
    assert t.extract_answer("Mostly NEGATIVE words, though a positive end. Final answer: neutral") == "neutral"
    assert t.extract_answer("It reads as positive, then negative") == "negative"
    exact = Dataset(path=path, question="{review}", answer="sentiment", answer_type="exact")
    assert exact.extract_answer("Thinking...\nThe answer is: **Positive**.") == "**Positive**."
    assert exact.correct("**Positive**.", type("E", (), {"answer": "positive"})())
    regex = Dataset(path=path, question="{review}", answer="sentiment", answer_type="regex", pattern=r"Label: (\w+)")
    assert regex.extract_answer("Label: x ... Label: neutral") == "neutral" and regex.extract_answer("none") is None


def test_judge_pairs_in_both_orders_with_the_judge_prompts(tmp_path):
    rows = [{"prompt": f"p{i}", "r1": f"one {i}", "r2": f"two {i}", "better": b} for i, b in enumerate([1, "B", "a", 2])]
    t = Dataset(train_size=2, test_size=2, test_ratio=0.5, path=write_jsonl(tmp_path / "j.jsonl", rows), question="{prompt}",
                answer="better", answer_type="judge_pair", responses=["r1", "r2"])
    test = t.load("test")
    assert len(test) == 4 and [e.metadata["order"] for e in test] == ["ab", "ba", "ab", "ba"]
    ab, ba = test[:2]
    assert ab.metadata["response_a"] == ba.metadata["response_b"] and {ab.answer, ba.answer} == {"A", "B"}
    prompt = METHODS["system1"](t).prompt("answer", ab)[0]["content"]
    assert prompt.startswith("Please act as an impartial judge") and ab.metadata["response_a"] in prompt
    assert t.extract_answer("... [[B]]") == parse_verdict("... [[B]]") == "B" and t.format_answer("b") == "[[B]]"
    assert t.inconsistent(test[:2], {ab.id: "A", ba.id: "A"}) == {ab.metadata["pair_id"]: True}


def run_pipeline(tmp_path, options, *extra):
    return Pipeline(load_config(None, [f"run_dir={tmp_path}/run", "task.name=dataset", "task.train_size=2", "task.test_size=1",
                                       f"task.options={json.dumps(options)}", "distill.methods=[system1]",
                                       "evaluate.systems=[system1]", *extra]))


@pytest.mark.parametrize("rows, options, message", [
    ([{"q": "a", "a": 1}] * 3, {"question": "{question}"},
     r"task.options.question names field 'question', which .* row \d+ does not have: its fields are a, q"),
    ([{"q": "a", "a": "Paris"}] * 3, {"question": "{q}", "answer": "a", "answer_type": "number"},
     r"row \d+: gold answer 'Paris' is not a number .*answer_type number"),
    ([{"q": "a", "a": "maybe"}] * 3, {"question": "{q}", "answer": "a", "answer_type": "yes_no"},
     r"gold answer 'maybe' is not yes/no or true/false"),
    ([{"q": "a", "a": "Z"}] * 3, {"question": "{q}", "answer": "a", "answer_type": "choice", "choices": ["x", "y"]},
     r"gold answer 'Z' is not one of x, y"),
    ([{"q": "a", "a": 1}] * 3, {"question": "{q}", "answer": "gold"}, r"task.options.answer names field 'gold'"),
    ([{"q": "a", "a": 1}] * 3, {"question": "{q}"}, "the test items need gold answers: set task.options.answer"),
    ([{"q": "a", "a": 1}] * 3, {"question": "{q}", "answer": "a", "answer_type": "regex", "pattern": "(a)(b)"},
     "has 2 groups: it needs exactly one"),
    ([{"q": "a", "a": 1}] * 3, {"question": "{q}", "answer": "a", "answer_type": "numbr"},
     "unknown task.options.answer_type 'numbr'"),
    ([{"q": "a", "a": 1}] * 3, {"question": "{q}", "answer": "a", "colour": "red"}, "unexpected keyword argument 'colour'"),
    ([], {"question": "{q}"}, r"data file .*empty.jsonl is empty"),
    ([{"q": "a", "a": 1}] * 2, {"question": "{q}", "answer": "a"}, r"task.train_size is 2 but .* has 1 train rows"),
])
def test_bad_input_is_one_line_before_any_model_loads(tmp_path, monkeypatch, rows, options, message):
    import sys2distill.models as models

    monkeypatch.setattr(models, "load_model_and_tokenizer", lambda *a, **k: pytest.fail("a model was loaded"))
    path = tmp_path / ("empty.jsonl" if not rows else "d.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=message):
        run_pipeline(tmp_path, {"path": str(path), **options})


def test_missing_file_and_offline_hub_dataset_exit_2_with_one_line(tmp_path):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for path, message in [(str(tmp_path / "nope.jsonl"), "data file .*nope.jsonl not found: fix task.options.path"),
                          ("someone/not-cached-dataset", "could not load Hugging Face dataset 'someone/not-cached-dataset'"
                                                         ".* run once with network access .* set task.options.path")]:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "task": {"name": "dataset", "options": {
            "path": path, "question": "{q}", "answer": "a", "test_split": "test"}}}))
        r = subprocess.run([sys.executable, "-m", "sys2distill", "run", str(cfg)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and re.search(message, r.stderr), r.stderr
        assert not (tmp_path / "run" / "generate").exists()

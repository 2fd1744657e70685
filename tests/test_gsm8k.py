"""GSM8K task (loader, numeric extraction) and the few-shot CoT method, on a scripted backend."""

import json

import pytest

from scripted import ScriptedBackend
from sys2distill.backends.base import SamplingParams
from sys2distill.errors import UserError
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.records import Example
from sys2distill.tasks import REGISTRY

ROWS = [{"question": f"Q{i}: how many?", "answer": f"Work.\n#### {a}"} for i, a in enumerate(["18", "2,125", "-3", "7"])]


@pytest.fixture
def data_dir(tmp_path):
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return tmp_path


@pytest.fixture
def task(data_dir):
    return REGISTRY["gsm8k"](train_size=3, test_size=3, data_dir=str(data_dir))


@pytest.mark.parametrize("text, answer", [
    ("The answer is 18.", "18"),
    ("Final answer: $1,234.50", "1234.5"),
    ("**Final answer:** **$18.00**.", "18"),
    ("Janet makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("She has 16 - 3 - 4 = 9 eggs, so 9 * 2 = 18 dollars.", "18"),  # no marker: the last number
    ("Final answer: 5 + 3 = 8 apples", "8"),  # the result after the last "="
    ("The answer is 18 dollars. (She sells 9 eggs at $2 each.)", "18"),  # first number after the marker
    ("So the total is \\boxed{42}.", "42"),
    ("The answer is -5.", "-5"),
    ("The temperature fell 8-3=5 degrees", "5"),  # a hyphen after a digit is not a sign
    ("She gave away 20 - 3", "3"),  # nor is a detached minus
    ("The answer is -$4.50", "-4.5"),
    ("Final answer: eighteen", "18"),
    ("Final answer:\n\n1,000,000", "1000000"),
    ("It costs €7.", "7"),
    ("The answer is 25%.", "25"),
    ("Answer: 3.0 hours", "3"),
    ("The answer is 18.\nCheck: 20 - 2 = 18, and 7 more", "18"),  # only the marker's own line
    ("Step 1: 2 + 2 = 4. Step 2: The answer is 1,2,3", "1"),  # "1,2,3" is a list, not a thousands number
    ("I cannot answer that.", None),
])
def test_numeric_extraction(task, text, answer):
    assert task.extract_answer(text) == answer


# Answer-rule classes of issue 18, each with cases written for this test (not the lines).
@pytest.mark.parametrize("text, answer", [
    # A stated answer wins over arithmetic in the explanation after it.
    ("The answer is 64. To check: 8 * 8 = 64, and half of that = 32", "64"),
    ("The answer is 15, since 3 * 5 = 15 and 15 - 5 = 10.", "15"),
    ("Final answer: 7 boxes, which is 2 more than 5 = 5", "7"),
    # A marked sentence that opens with words states its result after them, not in its lead-in.
    ("Final answer: For 6 friends, each one gets 4 slices.", "4"),
    ("Final answer: By week 2, the total is $1,250.", "1250"),
    ("The answer is: In 5 days the tank holds 250 liters.", "250"),  # no result word: its last number
    ("Final answer: total = 4 * 6 = 24 cookies", "24"),
    ("the final answer is 15 gallons * 8 pints per gallon = 120 pints", "120"),  # units inside an equation
    # Fractions are numbers.
    ("The answer is 3/8.", "0.375"),
    ("So she ate \\boxed{\\frac{1}{3}} of the pie.", "1/3"),
    ("Each gets 10/4 cups.", "2.5"),
    ("The answer is 12/25/2024", "12"),  # a date, not a fraction
    # No marker: a reply that opens with its answer keeps it; one that reasons first ends on it.
    ("$56 in total. She sold 14 cups at $4 each: 14 * 4 = 55, minus 1 spilled", "56"),
    ("56 dollars.\nShe sold 14 cups, so 14 * 4 = 56 and then 56 - 6 = 50 after costs.", "56"),
    ("Maria saved 90 dollars. This is because she put away 15 dollars for 6 weeks.", "90"),
    ("Maria saves 15 dollars a week. After 6 weeks she has 15 * 6 = 90 dollars.", "90"),
    ("Chair = 3 feet\nTable = 3 * 2 = 6 feet", "6"),
    ("1. She buys 3 packs.\n2. Each pack has 4, so 3 * 4 = 12.", "12"),
])
def test_answer_rule_classes(task, text, answer):
    assert task.extract_answer(text) == answer


def test_fractions_compare_numerically_with_gold(task):
    assert task.correct("6/3", Example("e", "q", "2")) and task.correct("1/4", Example("e", "q", "0.25"))
    assert task.is_correct("2/6", "1/3") and not task.is_correct("1/3", "0.33")


def test_correct_compares_numbers_not_spellings(task):
    ex = Example("e", "q", "2125")
    assert task.correct("2,125", ex) and task.correct("$2125.00", ex) and not task.correct("212", ex)
    assert not task.correct(None, ex) and not task.correct("-2125", ex)


def test_loader_splits_and_labels(task):
    test = task.load("test")
    assert [e.answer for e in test] == ["18", "2125", "-3"]  # canonical gold, file order
    assert test[0].question == "Q0: how many?" and test[0].id == "gsm8k-test-0000"
    train = task.load("train")
    assert len(train) == 3 and all(e.answer is None for e in train)  # labels never reach distillation
    assert train == REGISTRY["gsm8k"](train_size=3, test_size=3, data_dir=task.data_dir).load("train")  # seeded


def test_vendored_copy_is_the_official_set():
    t = REGISTRY["gsm8k"](train_size=7473, test_size=1319)
    test = t.load("test")
    assert len(test) == 1319 and test[0].answer == "18" and test[0].question.startswith("Janet’s ducks")
    assert len(t.load("train")) == 7473


def test_bad_data_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="set task.options.data_dir"):
        REGISTRY["gsm8k"](data_dir=str(tmp_path)).load("test")
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(UserError, match="test.jsonl row 1: gold answer 'no marker' is not a number"):
        REGISTRY["gsm8k"](test_size=1, data_dir=str(tmp_path)).load("test")


def test_cot_fewshot_prompt_and_exemplar_override(task):
    ex = Example("e", "How many legs do 2 cats have?")
    text = METHODS["cot_fewshot"](task).prompt("answer", ex)[0]["content"]
    assert text.startswith("Q: There are 15 trees in the grove.") and text.count("The answer is") == 8
    assert text.endswith("The answer is 8.\n\nQ: How many legs do 2 cats have?\nA:")
    custom = METHODS["cot_fewshot"](task, {"exemplars": "Q: {1+1}?\nA: 2. The answer is 2.\n\n"})
    assert custom.prompt("answer", ex)[0]["content"] == "Q: {1+1}?\nA: 2. The answer is 2.\n\nQ: How many legs do 2 cats have?\nA:"
    backend = ScriptedBackend(lambda p, j: "2 cats have 2 * 4 = 8 legs. The answer is 8.")
    (traces,) = custom.run([ex], backend, SamplingParams(n=2, temperature=0.7))
    assert [t.answer for t in traces] == ["8", "8"] and traces[0].tokens == 13

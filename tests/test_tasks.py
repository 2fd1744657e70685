import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sys2distill.errors import UserError
from sys2distill.tasks import REGISTRY
from sys2distill.tasks.coin_flip import CoinFlip
from sys2distill.tasks.last_letter import LastLetter

RAR = Path(__file__).parents[1] / "src/sys2distill/tasks/data/rar"
TASKS = [LastLetter, CoinFlip]


def rar(name):
    return json.loads((RAR / name).read_text())


def words_of(ex):
    return {w.lower() for w in ex.metadata["words"]}


def test_registry():
    assert REGISTRY["last_letter"] is LastLetter and REGISTRY["coin_flip"] is CoinFlip
    assert all(cls.extraction_rule for cls in TASKS)


@pytest.mark.parametrize("cls", TASKS)
def test_deterministic_sizes_and_ids(cls):
    a, b, c = cls(seed=0, train_size=30, test_size=20), cls(seed=0, train_size=30, test_size=20), cls(seed=1)
    for split, n in [("train", 30), ("test", 20)]:
        assert a.load(split) == b.load(split)
        assert len(a.load(split)) == n
        assert [e.question for e in a.load(split)] != [e.question for e in c.load(split)[:n]]
        assert len({e.question for e in a.load(split)}) == n  # no repeated items
    assert a.load("test")[7].id == f"{cls.name}-test-0007"


@pytest.mark.parametrize("cls", TASKS)
def test_train_unlabeled_and_words_held_out(cls):
    task = cls(train_size=200, test_size=200)
    train, test = task.load("train"), task.load("test")
    assert all(e.answer is None for e in train) and all(e.answer for e in test)
    assert not set().union(*map(words_of, train)) & set().union(*map(words_of, test))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_last_letter_synthetic_answers(k):
    task = LastLetter(test_size=50, num_words=k)
    for e in task.load("test"):
        words = re.search(r'"(.+)"', e.question).group(1).split()
        assert e.question == f'Take the last letters of the words in "{" ".join(words)}" and concatenate them.'
        assert e.answer == "".join(w[-1].lower() for w in words) and len(e.answer) == k
        assert e.metadata["words"] == words and task.prompt_fields(e) == {"num_words": k}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_coin_flip_synthetic_answers(k):
    test = CoinFlip(test_size=300, num_people=k).load("test")
    for e in test:
        flips = e.question.count(" flips the coin.")
        assert flips + e.question.count(" does not flip the coin.") == k
        assert e.question.startswith("A coin is heads up. ")
        assert e.question.endswith(" Is the coin still heads up? Flip means reverse.")
        assert e.answer == ("yes" if flips % 2 == 0 else "no")
        assert e.metadata["flips"].count(True) == flips
    assert 0.35 < sum(e.answer == "yes" for e in test) / len(test) < 0.65  # roughly balanced


@pytest.mark.parametrize("k, file, n", [(2, "last_letter_concatenation_gpt-4.json", 219),
                                        (4, "last_letter_concatenation4_gpt-4.json", 220)])
def test_last_letter_rar(k, file, n):
    task = LastLetter(source="rar", num_words=k, train_size=150, test_size=1000)
    test, train = task.load("test"), task.load("train")
    assert [(e.question, e.answer) for e in test] == [(it["question"], it["answer"]) for it in rar(file)]
    assert len(test) == n and all(e.answer is None for e in train) and len(train) == 150
    assert not set().union(*map(words_of, train)) & set().union(*map(words_of, test))
    assert LastLetter(source="rar", num_words=k, test_size=10).load("test") == test[:10]


def test_coin_flip_rar():
    task = CoinFlip(source="rar", train_size=2000, test_size=1000)
    test, train = task.load("test"), task.load("train")
    gold = rar("coin_val_gpt-4.json")
    assert [(e.question, e.answer) for e in test] == [(it["question"], it["answer"]) for it in gold]
    assert len(test) == 220 and len(train) == 1333 - 220 and all(e.answer is None for e in train)
    assert not {e.question for e in train} & {e.question for e in test}  # same surface form, so this bites
    for e in test:  # gold = parity of flips, checked independently
        assert e.answer == ("yes" if e.question.count(" flips the coin.") % 2 == 0 else "no")
    assert CoinFlip(source="rar", test_size=5).load("test") == test[:5]
    assert CoinFlip(source="rar", seed=1, train_size=5).load("train") != train[:5]


@pytest.mark.parametrize("make", [
    lambda: LastLetter(source="wiki"), lambda: CoinFlip(source="wiki"), lambda: LastLetter(source="rar", num_words=3),
    lambda: LastLetter(num_words=0), lambda: CoinFlip(num_people=0), lambda: LastLetter().load("dev"),
    lambda: LastLetter(test_size=10**6).load("test"),
])
def test_user_errors(make):
    with pytest.raises(UserError):
        make()


def test_user_error_names_choices():
    with pytest.raises(UserError, match="2, 4"):
        LastLetter(source="rar", num_words=3)
    with pytest.raises(UserError, match="'synthetic', 'rar'"):
        CoinFlip(source="wiki")


@pytest.mark.parametrize("text, expected", [
    ("rb", "rb"),
    ('"rb"', "rb"),
    ('The answer is "rb".', "rb"),
    ("Final answer: RB", "rb"),
    ("**rb**", "rb"),
    ("The last letters are r and b, so the answer is rb.", "rb"),
    ("Concatenating them gives: rb", "rb"),
    ("r + b = rb", "rb"),
    ("The last letter of Edgar is r.\nThe last letter of Bob is b.\nrb", "rb"),
    ('Take the last letters of the words in "Edgar Bob" and concatenate them.\nEdgar ends in r, Bob in b.\n'
     "The answer is rb.", "rb"),
    ("**Answer:** rb", "rb"),
    ("The answer is: **rb**", "rb"),
    ("Answer: r b", "rb"),
    ("Final answer: r-b", "rb"),
    ("So, the final answer is `rb`.", "rb"),
    ('Concatenating "r" and "b" gives "rb".', "rb"),
    ("Thus we get rb.", "rb"),
    ('So "rb" is the answer.', "rb"),
    ("Edgar → r\nBob → b\nConcatenated: rb\n\nHope this helps!", "rb"),
    ("Edgar's last letter is r and Bob's is b. Together they form rb.", "rb"),
    ("The answer is as follows:\nRB", "rb"),
    ("The answer is r + b = rb (Edgar, Bob).", "rb"),
    ("Final answer: YAEY", "yaey"),
    ("Final answer: The last letters are r and b, so rb.", "rb"),
    ('Final answer: the concatenation of "r" and "b" is "rb"', "rb"),
    ("The answer is rb, which is correct.", "rb"),
    ("rb\n\nExplanation: Edgar ends with r and Bob ends with b.", "rb"),
    ("Sure!\nEdgar ends with r, Bob with b, so together: rb", "rb"),
    ("The answer is no.", "no"),  # a real answer ("Shannon Alejandro"), not a refusal
    ('Take the last letters of the words in "Edgar Bob" and concatenate them.', None),
    ("", None),
    ("I am not sure about this one.", None),
])
def test_last_letter_extraction(text, expected):
    assert LastLetter().extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"),
    ("no.", "no"),
    ("**No**", "no"),
    ("The answer is no.", "no"),
    ("Final answer: Yes", "yes"),
    ("Answer: no", "no"),
    ("Yes, the coin is still heads up.", "yes"),
    ("No, it is tails up now.", "no"),
    ("Edgar flips it to tails, Bob flips it back to heads. So yes.", "yes"),
    ("Is the coin still heads up? Answer the Yes or No question.\nThe coin was flipped once, so no.", "no"),
    ("Answer the Yes or No question: the coin was flipped twice, so it is still heads up.", "yes"),
    ("A coin is heads up. Edgar flips the coin. Is the coin still heads up?\nIt ends up tails.", "no"),
    ("The coin was flipped once, so it is no longer heads up.", "no"),
    ("No one flips the coin, so the answer is yes.", "yes"),
    ("No one flips the coin, so it is still heads up.", "yes"),
    ("Step 1: tails. Step 2: heads.\nFinal answer: **Yes**", "yes"),
    ("The answer is: it is not heads up.", "no"),
    ("yes/no: yes", "yes"),
    ("After two flips it's heads up again.", "yes"),
    ("The coin is heads up? No.", "no"),
    ("After Edgar flips, tails. After Bob flips, heads. The coin is heads up.", "yes"),
    ("It goes from heads up to tails.", "no"),
    ("It is heads up, then tails.", None),
    ("A coin is heads up. Is the coin still heads up?", None),
    ("I cannot tell.", None),
    ("", None),
])
def test_coin_flip_extraction(text, expected):
    assert CoinFlip().extract_answer(text) == expected


@pytest.mark.parametrize("task, predicted, gold, ok", [
    (LastLetter(), "RB.", "rb", True), (LastLetter(), '"rb"', "rb", True), (LastLetter(), "rb", "br", False),
    (LastLetter(), None, "rb", False), (CoinFlip(), "Yes!", "yes", True), (CoinFlip(), "**NO**", "no", True),
    (CoinFlip(), "no", "yes", False),
])
def test_is_correct(task, predicted, gold, ok):
    assert task.is_correct(predicted, gold) is ok


# Answer-rule classes of issue 18, each with cases written for this test (not the lines).
@pytest.mark.parametrize("text, expected", [
    # A "no" that is a determiner or adverb earlier in the trace does not beat the final statement.
    ("Lena flips the coin, so it lands tails. Omar does not flip it, which has no effect. Therefore it is still tails.",
     "no"),
    ("Lena and Omar each reverse it, so there is no net change.\nSo the coin stays heads up.", "yes"),
    ("No single flip matters here: two reversals cancel, and the coin ends heads up.", "yes"),
    ("Omar makes no difference; the coin is heads up again.", "yes"),
    ("There is no doubt. After Lena's flip the coin shows tails.", "no"),
    # A parenthetical naming the format does not hide the answer marker.
    ("Two flips cancel. The answer (Yes/No) is Yes. There is no trick to it.", "yes"),
    ("Lena flipped once. The answer (yes or no) is: no", "no"),
    # Short final states are answers.
    ("Lena flips, Omar flips.\nBack to heads up.", "yes"),
    ("Heads.", "yes"),
    ("Result: tails up.", "no"),
    ("Nah.", "no"),
    ("Yup!", "yes"),
    ("Nope, Lena turned it over.", "no"),
    # The coin's state outweighs a reply to some other question in the same sentence.
    ("Did Omar's flip change it for good? No, it is still heads up after Lena's.", "yes"),
    # A "no" that opens a clause is a reply; one that ends it is too.
    ("No, because only Lena reversed it.", "no"),
    ("Two reversals, so no.", "no"),
])
def test_coin_flip_final_statement_decides(text, expected):
    assert CoinFlip().extract_answer(text) == expected


@pytest.mark.parametrize("text", [
    "Suppose Lena flips it and Omar does not: is the coin heads up?",
    "The task asks whether the coin is still heads up.",
    "If only Omar flips the coin, is it still heads up",
    "**Is the coin still heads up?** Flip means reverse.",
    "A coin is heads up. Lena flips the coin. Omar does not flip the coin.",
    "Answer with Yes or No.",
    # Rephrased questions (RaR's step 1): a premise in other words, then the question.
    "The coin begins heads up. Lena reverses it and Omar leaves it alone. After both turns, is it heads up? "
    "Here, to flip means to turn it over.",
    "Initially the coin shows heads. Lena turns it over, which changes it from heads to tails. "
    "Then Omar turns it over as well. We must work out whether the coin now shows heads.",
])
def test_coin_flip_restated_question_is_no_answer(text):
    assert CoinFlip().extract_answer(text) is None


def test_coin_flip_an_aside_question_does_not_hide_the_answer():
    assert CoinFlip().extract_answer("Lena flips it, so it shows tails. What about Omar? He leaves it alone.") == "no"
    assert CoinFlip().extract_answer("Whether or not Omar acts, Lena's flip leaves it tails.") == "no"


def test_coin_flip_hypothetical_clause_is_skipped_not_its_sentence():
    # The "if" clause states nothing; the main clause does.
    assert CoinFlip().extract_answer("If Lena flips it once, it ends up tails.") == "no"
    assert CoinFlip().extract_answer("The coin goes from tails back to heads.") == "yes"


@pytest.mark.parametrize("text, expected", [
    # Filler words between the marker and the answer are not the answer.
    ("The answer is simply ky.", "ky"),
    ("The answer is clearly ky because Nicky ends in y.", "ky"),
    ("Final answer: a two-letter string: ky", "ky"),
    ("The answer is an 2-letter word ky.", "ky"),
    ("So the final answer is just `ky`.", "ky"),
    # ...but such a word is read when it is the answer ("Marian" + "Ivan" ends in "nn"; "an" is real).
    ("The answer is an, since Maria ends in a and Ivan in n.", "an"),
    # Letters outside A-Z belong to their word.
    ('"José Zoë": José ends in é and Zoë in ë, so the answer is éë.', "éë"),
    ("Raúl → l\nInés → s\nConcatenated: ls", "ls"),
    ("The answer is e\u0301n.", "én"),  # "e" + a combining accent is the one letter "é"
    ("Answer: ñ ö", "ñö"),
])
def test_last_letter_fillers_and_letters(text, expected):
    assert LastLetter().extract_answer(text) == expected


def test_last_letter_non_ascii_gold_scores():
    task = LastLetter(source="rar", num_words=4, test_size=1000)
    item = next(e for e in task.load("test") if "José" in e.question)
    assert item.answer == "léon" and task.is_correct(task.extract_answer("The answer is LÉON."), item.answer)


@pytest.mark.parametrize("task", [CoinFlip(), LastLetter()], ids=["coin_flip", "last_letter"])
@pytest.mark.parametrize("text", ["Let me think. So the answer is ", "Final answer: \t", "The answer is \x1c"])
def test_output_cut_off_after_the_answer_marker_is_no_answer(task, text):
    # A sample stopped by max_tokens right after "The answer is " names no answer (it used to raise).
    assert task.extract_answer(text) is None


def _every_rule():
    from sys2distill.tasks.dataset import ANSWER_TYPES, DatasetTask

    rules = [cls() for name, cls in REGISTRY.items() if name != "dataset"]
    rules += [DatasetTask(path="rows.jsonl", answer_type=t, choices=["yes", "no", "maybe"], pattern=r"(\d+)",
                          responses=["a", "b"]) for t in ANSWER_TYPES]
    return rules


# Pieces of real outputs: answer markers, verdicts, numbers, and the whitespace and control characters
# that str.strip and str.splitlines treat differently from the regex engine.
FRAGMENTS = ["The answer is", "Final answer:", "answer (Yes or No) is", "FINAL:", "[[A]]", "[[C]]", "Response 2",
             "yes", "No.", "42", "-3.5", "1,000", "$", "**", ".", " ", "\n", "\t", "\x1c", "\u2028", "\x85", "é"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=12))
def test_no_answer_rule_raises_on_any_output(pieces):
    text = "".join(pieces)
    for task in RULES:
        answer = task.extract_answer(text)
        assert answer is None or isinstance(answer, str), (task.name, text, answer)


RULES = _every_rule()

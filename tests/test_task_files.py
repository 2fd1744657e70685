"""last_letter and coin_flip on items from a file (``task.source=rar``, ``task.options.path``), the
flip note, and the options a source fixes or ignores."""

import gzip
import json

import pytest

from sys2distill.errors import UserError
from sys2distill.tasks.coin_flip import CoinFlip
from sys2distill.tasks.last_letter import LastLetter
from sys2distill.tasks.names import read_items, read_rar

COINS = [{"question": f"A coin is heads up. {a} flips the coin. {b} does not flip the coin. {c} flips the coin. "
                      "Is the coin still heads up?", "answer": "yes"}
         for a, b, c in [("Edgar", "Bob", "Anna"), ("Maria", "Ivan", "Lena"), ("Ada", "Eli", "Fay")]]
WORDS = [{"question": f'Take the last letters of the words in "{w}" and concatenate them.', "answer": a}
         for w, a in [("René Inés Raúl", "ésl"), ("Ada Bo Eli", "aoi"), ("Anna Edgar Fay", "ary")]]
# Names in the files above that the synthetic generator could also draw: they must stay held out.
COIN_NAMES = {"edgar", "bob", "anna", "maria", "ivan", "lena", "ada", "eli", "fay"}
WORD_NAMES = {"ada", "bo", "eli", "anna", "edgar", "fay"}


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_synthetic_coin_questions_carry_rars_flip_note_by_default():
    rar_question = read_rar("coin_val_gpt-4.json")[0]["question"]
    note = rar_question[rar_question.index("?") + 1:]
    assert note == " Flip means reverse."
    assert all(e.question.endswith("Is the coin still heads up?" + note) for e in CoinFlip(test_size=20).load("test"))
    plain = CoinFlip(test_size=20, flip_note=False).load("test")
    assert all(e.question.endswith("Is the coin still heads up?") for e in plain)
    # Only the note differs: same people, same flips, same answers.
    assert [e.question for e in plain] == [e.question.removesuffix(note) for e in CoinFlip(test_size=20).load("test")]


def test_coin_file_items_and_train_inputs_of_their_shape(tmp_path):
    task = CoinFlip(source="rar", path=str(jsonl(tmp_path / "coins.jsonl", COINS)), test_size=2, train_size=200)
    test, train = task.load("test"), task.load("train")
    assert [(e.question, e.answer) for e in test] == [(it["question"], it["answer"]) for it in COINS[:2]]
    assert task.num_people == 3 and task.flip_note is False
    assert len(train) == 200 and all(e.answer is None and e.metadata["num_people"] == 3 for e in train)
    assert all(e.question.endswith("heads up?") for e in train)  # the file's items have no note: nor do these
    assert not COIN_NAMES & {w.lower() for e in train for w in e.metadata["words"]}


def test_coin_file_in_rars_pool_format(tmp_path):
    pool = [{"inputs": " Q: A coin is heads up. ana flips the coin.  Is the coin still heads up? ", "targets": "no",
             "targets_vec": [1, 0]}]
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    (item,) = CoinFlip(source="rar", path=str(tmp_path / "pool.json")).load("test")
    assert item.question == "A coin is heads up. ana flips the coin.  Is the coin still heads up?" and item.answer == "no"


def test_last_letter_file_items(tmp_path):
    task = LastLetter(source="rar", path=str(jsonl(tmp_path / "ll.jsonl", WORDS)), test_size=5, train_size=200)
    test, train = task.load("test"), task.load("train")
    assert [(e.question, e.answer) for e in test] == [(it["question"], it["answer"]) for it in WORDS]
    assert test[0].metadata["words"] == ["René", "Inés", "Raúl"] and task.prompt_fields(test[0]) == {"num_words": 3}
    assert task.is_correct(task.extract_answer("René → é, Inés → s, Raúl → l.\nThe answer is ésl."), test[0].answer)
    assert len(train) == 200 and all(len(e.metadata["words"]) == 3 and e.answer is None for e in train)
    assert not WORD_NAMES & {w.lower() for e in train for w in e.metadata["words"]}
    assert LastLetter(source="rar", num_words=3, path=str(tmp_path / "ll.jsonl")).num_words == 3  # agrees: fine


@pytest.mark.parametrize("cls, options, message", [
    # A source that ignores an option, or items that fix it to another value, is an error naming the fix.
    (CoinFlip, {"path": COINS}, "set task.source=rar"),
    (LastLetter, {"path": WORDS}, "set task.source=rar"),
    (CoinFlip, {"source": "rar", "num_people": 3}, "num_people=3 but RaR's coin_val_gpt-4.json has num_people 2"),
    (CoinFlip, {"source": "rar", "flip_note": False}, "flip_note=False but RaR's"),
    (CoinFlip, {"flip_note": "no"}, "flip_note must be true or false"),
    (CoinFlip, {"source": "rar", "num_people": 2, "path": COINS}, "has num_people 3"),
    (LastLetter, {"source": "rar", "num_words": 2, "path": WORDS}, "has 3-word items"),
])
def test_options_a_source_fixes_or_ignores(tmp_path, cls, options, message):
    if "path" in options:
        options = {**options, "path": str(jsonl(tmp_path / "items.jsonl", options["path"]))}
    with pytest.raises(UserError, match=message):
        cls(**options)


def test_rar_options_equal_to_the_files_are_fine():
    assert CoinFlip(source="rar", num_people=2, flip_note=True).load("test") == CoinFlip(source="rar").load("test")


@pytest.mark.parametrize("write, message", [
    (None, "does not exist"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(gzip.compress(b'[{"question": "q", "answer": "a"}]')), "is gzip-compressed"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "is not UTF-8 text"),
    (lambda p: p.write_text('[{"question": "q", "answer": "a"},]'), r"is not valid JSON \(.*line 1\)"),
    (lambda p: p.write_text('{"question": "q", "answer": "a"}\n{"question": "q"\n'), "line 2 is not valid JSON"),
    (lambda p: p.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n'), 'line 2 is not an item'),
    (lambda p: p.write_text('[{"question": "q", "answer": "a"}, ["q", "a"]]'), "item 2 is not an item"),
    (lambda p: p.write_text("[]"), "holds no items"),
])
def test_bad_files_are_one_clear_line(tmp_path, write, message):
    path = tmp_path / "items.json"
    if write:
        write(path)
    with pytest.raises(UserError, match=message) as e:
        read_items(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("make, rows, message", [
    (CoinFlip, [{"question": "Is the sky blue?", "answer": "yes"}], "item 1 is not a coin-flip item"),
    (CoinFlip, [{**COINS[0], "answer": "maybe"}], "item 1 is not a coin-flip item"),
    (CoinFlip, [COINS[0], {**COINS[1], "question": COINS[1]["question"] + " Flip means reverse."}],
     r"mixes items with flip_note \[False, True\]"),
    (LastLetter, [{"question": "Take the last letters of Ada Bo.", "answer": "ao"}], "item 1 is not a last-letter item"),
    (LastLetter, [WORDS[1], {"question": 'Take the last letters of the words in "Ada Bo"', "answer": "ao"}],
     r"mixes items of \[2, 3\] words"),
])
def test_rows_that_are_not_the_tasks_items(tmp_path, make, rows, message):
    with pytest.raises(UserError, match=message):
        make(source="rar", path=str(jsonl(tmp_path / "items.jsonl", rows)))

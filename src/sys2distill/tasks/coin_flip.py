"""Coin flip reasoning (arXiv 2407.06023 Sec. 4.1, the RaR tasks).

"A coin is heads up. Edgar flips the coin. Bob does not flip the coin. Is the coin still heads
up? Flip means reverse." → ``no``. Format and the ``rar`` data are those of Rephrase and Respond
(Deng et al. 2023, arXiv 2311.04205): its GPT-4 test set (220 items) and the pool of 1,333 items
it was drawn from; ``task.options.path`` reads other items in that format.
"""

from __future__ import annotations

import random
import re

from sys2distill.errors import UserError
from sys2distill.records import Example
from sys2distill.tasks import register_task
from sys2distill.tasks.base import Task, after_last_marker
from sys2distill.tasks.names import SPLITS, all_names, check_choice, name_pool, read_items, read_rar, sample_words

RAR_TEST, RAR_POOL = "coin_val_gpt-4.json", "coin_val.json"
# RaR's test questions end with this note (zero-shot-CoT's, Kojima et al. 2022, says the same at
# more length: "flip" here means "reverse"). RaR's pool file lacks it; we append it there so train
# inputs look like test inputs, and strip it to match the two.
FLIP_NOTE = "Flip means reverse."

_ACTION = re.compile(r"(\S+) (flips|does not flip) the coin\.")

# -- answer extraction ----------------------------------------------------------------------
# "Answer the Yes or No question." restates the format; it is not an answer.
_PAIR = re.compile(r"\b(?:yes|no)[\s-]*(?:or|/)[\s-]*(?:yes|no)\b", re.I)
# A yes/no counts only as a reply. "yes"-words and "nope"/"nah" are never anything else; "no" is
# also a determiner or adverb ("no effect", "no net change", "no longer"), so it counts only
# where it ends its clause ("No.", "so no", "is No)") or opens one ("No, it", "no because").
_REPLY = re.compile(
    r"(?<![\w'’-])(?:(?P<yes>yes|yeah|yep|yup)|(?P<no>nope|nah|no(?=\s*(?:[^\w\s]|$)|\s+(?:because|since|as|but|it)\b)))"
    r"(?![\w'’-])", re.I | re.M)
# Text that mentions a state without stating the outcome: the premise quoted from the prompt, a
# question even without its "?" ("is it still heads up"), a hypothetical ("if Bob flips it, ..."),
# and a starting state, up to the state it names ("from heads up to tails", "The initial position
# of the coin is heads up").
_NOT_STATED = re.compile(
    r"\ba coin is heads[ -]up\b|\bis (?:it|the coin) (?:still )?heads[ -]up\b|\bif\b[^,.;:!?\n]*"
    r"|\b(?:from|initial(?:ly)?|original(?:ly)?|at first|starts?|started|starting|begins?|began)\b[^,.;:!?\n]*?"
    r"\b(?:heads|tails)\b", re.I)
_NOT_HEADS = re.compile(r"(?:\bnot|\bno longer|\bnever|n't)\s+(?:(?:still|be|on|showing|facing)\s+)*heads\b|\btails\b", re.I)
_HEADS = re.compile(r"\bheads\b", re.I)  # "Heads up.", "still heads up", "back to heads", once negations are gone
_WHETHER = re.compile(r"\bwhether\b(?!\s+or\s+not)", re.I)
_ABOUT_COIN = re.compile(r"\b(?:coin|heads|tails)\b", re.I)
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;]*")


def _asks(sentence: str) -> bool:
    """A question, or a sentence holding one ("We must find out whether it is heads up.", not
    "whether or not Bob flips, ...")."""
    return sentence.rstrip(" *_\"'”’)").endswith("?") or _WHETHER.search(sentence) is not None


def _verdict(sentence: str) -> str | None:
    """"yes"/"no" if the sentence states one, "" if it states both (ambiguous), None if none.

    The coin's state is what the question asks, so a sentence naming it is read by it; a reply
    can answer a sub-question ("Is it tails? No, it is still heads up"). A question states none.
    """
    if _asks(sentence):
        return None
    sentence = _NOT_STATED.sub(" ", sentence)
    said = {"no"} if _NOT_HEADS.search(sentence) else set()
    if _HEADS.search(_NOT_HEADS.sub(" ", sentence)):
        said.add("yes")
    if not said:
        said = {"yes" if m.group("yes") else "no" for m in _REPLY.finditer(sentence)}
    return (said.pop() if len(said) == 1 else "") if said else None


@register_task("coin_flip")
class CoinFlip(Task):
    """Is a heads-up coin still heads up after ``num_people`` people each flip it or not?"""

    version = 2
    extraction_rule = (
        "after the last answer marker, its first sentence stating yes/no; else the last sentence stating one, None "
        "if a question about the coin ('...heads up?', 'whether...') comes after it; questions, if/whether clauses, "
        "the premise and starting states state nothing; a sentence states the coin's state (heads → yes; tails, "
        "not/no longer heads → no; both → None) or else a reply (yes/yep, nope, or a 'no' ending or opening a "
        "clause, not 'no effect'/'no longer'); 'Yes or No' ignored; else None"
    )

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic",
                 num_people: int | None = None, flip_note: bool | None = None, path: str | None = None):
        super().__init__(train_size, test_size, seed, source)
        check_choice(source, ("synthetic", "rar"), "coin_flip source")
        self.path, self.items = path, None
        if source == "synthetic":
            if path is not None:
                raise UserError("task.options.path is read only with task.source=rar (items in RaR's format): "
                                "set task.source=rar, or drop the path to generate items")
            self.num_people = 2 if num_people is None else num_people
            # On by default: the paper tests on RaR's items, which all carry it, so synthetic items
            # read like them; off gives the wording of Wei et al.'s original coin-flip task.
            self.flip_note = True if flip_note is None else flip_note
            if not isinstance(self.flip_note, bool):
                raise UserError(f"task.options.flip_note must be true or false, got {flip_note!r}")
        else:
            self.items = read_items(path) if path else read_rar(RAR_TEST)
            self.num_people, self.flip_note = self._shape(num_people, flip_note)
        if self.num_people < 1:
            raise UserError(f"num_people must be at least 1, got {self.num_people}")

    def _shape(self, num_people: int | None, flip_note: bool | None) -> tuple[int, bool]:
        """People per item and note of the RaR-format items; an option that disagrees with them is an error."""
        where = self.path or f"RaR's {RAR_TEST}"
        people, notes = set(), set()
        for i, it in enumerate(self.items, 1):
            if not _ACTION.findall(it["question"]) or it["answer"].strip().lower() not in ("yes", "no"):
                raise UserError(f"{where} item {i} is not a coin-flip item: the question needs 'NAME flips the coin.' / "
                                f"'NAME does not flip the coin.' sentences and the answer 'yes' or 'no'")
            people.add(len(_ACTION.findall(it["question"])))
            notes.add(it["question"].rstrip().endswith(FLIP_NOTE))
        for option, given, found in (("num_people", num_people, people), ("flip_note", flip_note, notes)):
            if len(found) > 1:  # synthetic train inputs are made in the items' one shape
                raise UserError(f"{where} mixes items with {option} {sorted(found)}: split it into one file per value")
            if given is not None and {given} != found:
                raise UserError(f"task.options.{option}={given} but {where} has {option} {found.pop()}: drop "
                                f"task.options.{option} (the items fix it) or use task.source=synthetic")
        return people.pop(), notes.pop()

    def load(self, split: str) -> list[Example]:
        check_choice(split, SPLITS, "split")
        if self.items is None:
            return self._synthetic(split, name_pool(split))
        if split == "test":
            return [self._example(split, i, it["question"], it["answer"].strip().lower())
                    for i, it in enumerate(self.items[: self.test_size])]
        if self.path:
            # A user's items come without a pool: train on items of the same shape, made from
            # names the file never uses, so no test person is trained on.
            used = {w.lower() for it in self.items for w, _ in _ACTION.findall(it["question"])}
            return self._synthetic(split, [w for w in all_names() if w.lower() not in used])
        # Exclude all 220 test questions, whatever test_size, so no test item is ever trained on.
        held_out = {_key(it["question"]) for it in self.items}
        pool = [f"{it['question']} {FLIP_NOTE}" for it in read_rar(RAR_POOL)]
        pool = [q for q in pool if _key(q) not in held_out]
        random.Random(f"{self.name}-{self.seed}-train").shuffle(pool)
        return [self._example(split, i, q, None) for i, q in enumerate(pool[: self.train_size])]

    def _synthetic(self, split: str, names: list[str]) -> list[Example]:
        rng = random.Random(f"{self.name}-{self.seed}-{split}")  # str seeds hash the same on every run
        size = self.train_size if split == "train" else self.test_size
        out = []
        for i, people in enumerate(sample_words(rng, names, self.num_people, size)):
            # Fair, independent flips make the parity, hence yes/no, balanced in expectation.
            acts = [f"{p} flips the coin." if rng.random() < 0.5 else f"{p} does not flip the coin." for p in people]
            note = [FLIP_NOTE] if self.flip_note else []
            question = " ".join(["A coin is heads up.", *acts, "Is the coin still heads up?", *note])
            out.append(self._example(split, i, question, _parity(question)))
        return out

    def _example(self, split: str, i: int, question: str, answer: str | None) -> Example:
        acts = _ACTION.findall(question)
        # Train labels are dropped here: distillation must learn from the model's own votes only.
        return Example(id=f"{self.name}-{split}-{i:04d}", question=question, answer=answer if self.labeled(split) else None,
                       metadata={"num_people": len(acts), "words": [p for p, _ in acts],
                                 "flips": [a == "flips" for _, a in acts], "source": self.source})

    def extract_answer(self, text: str) -> str | None:
        text = _PAIR.sub(" ", text)
        marked = after_last_marker(text)
        # A marker introduces the answer: what follows it first decides.
        for sentence in _SENTENCE.findall(marked or ""):
            if verdict := _verdict(sentence):
                return verdict
        # Reasoning passes through states ("after Edgar, tails") and asides ("which has no
        # effect"): the final statement decides; if it states both answers, there is none. A text
        # that ends asking about the coin (a rephrased question: premise, then "is it still heads
        # up?") has not answered: the states before that question are its premise.
        for sentence in reversed(_SENTENCE.findall(text)):
            if _asks(sentence) and _ABOUT_COIN.search(sentence):
                return None
            verdict = _verdict(sentence)
            if verdict is not None:
                return verdict or None
        return None


def _key(question: str) -> str:
    """RaR pool inputs and test questions (with the note) in one comparable form."""
    return " ".join(question.split()).removesuffix(FLIP_NOTE).strip()


def _parity(question: str) -> str:
    return "yes" if sum(a == "flips" for _, a in _ACTION.findall(question)) % 2 == 0 else "no"

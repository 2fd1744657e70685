"""Coin flip reasoning (arXiv 2407.06023 Sec. 4.1, the RaR tasks).

"A coin is heads up. Edgar flips the coin. Bob does not flip the coin. Is the coin still heads
up?" → ``no``. Format and the ``rar`` data are those of Rephrase and Respond (Deng et al. 2023,
arXiv 2311.04205): its GPT-4 test set (220 items) and the pool of 1,333 items it was drawn from.
"""

from __future__ import annotations

import random
import re

from sys2distill.errors import UserError
from sys2distill.records import Example
from sys2distill.tasks import register_task
from sys2distill.tasks.base import Task, after_last_marker
from sys2distill.tasks.names import SPLITS, check_choice, name_pool, read_rar, sample_words

RAR_TEST, RAR_POOL = "coin_val_gpt-4.json", "coin_val.json"
# RaR appended this to its test questions only; we append it to pool items too so train inputs
# look like test inputs, and strip it when matching pool items against the test set.
RAR_SUFFIX = " Flip means reverse."

_ACTION = re.compile(r"(\S+) (flips|does not flip) the coin\.")
# "Answer the Yes or No question." restates the prompt; it is not an answer.
_PAIR = re.compile(r"\b(?:yes|no)\s*(?:or|/|,)\s*(?:yes|no)\b", re.I)
# "no one flips", "no longer heads up": a "no" that is not a reply.
_YESNO = re.compile(r"\b(yes|no)\b(?!\s+(?:one|longer|more|flips?|flipping|change|matter)\b)", re.I)
_QUESTION = re.compile(r"a coin is heads up|is the coin still heads up", re.I)
_NOT_HEADS = re.compile(r"(?:\bnot|\bno longer|n't)\s+(?:still\s+)?heads[ -]up|\btails\b", re.I)
_HEADS = re.compile(r"\b(?:still|is|'s|remains?|stays?|ends? up|lands?)\s+(?:on\s+)?heads\b", re.I)


def _phrase(text: str) -> str | None:
    """"still heads up" → yes, "tails"/"not heads up" → no, read in the last sentence with either.

    Reasoning passes through states ("after Edgar, tails; after Bob, heads up"), so the last
    sentence decides; one that names both is ambiguous and gives None.
    """
    text = _QUESTION.sub(" ", text)  # a restated question says "heads up" without answering
    for sentence in reversed(re.split(r"[.!?;\n]+", text)):
        no = bool(_NOT_HEADS.search(sentence))
        yes = bool(_HEADS.search(_NOT_HEADS.sub(" ", sentence)))
        if yes or no:
            return None if yes and no else ("yes" if yes else "no")
    return None


@register_task("coin_flip")
class CoinFlip(Task):
    """Is a heads-up coin still heads up after ``num_people`` people each flip it or not?"""

    extraction_rule = (
        "first yes/no after the last answer marker; else a leading yes/no; else the last standalone yes/no "
        "('Yes or No' pairs, 'no one/longer' ignored); else the last sentence saying 'still heads up' (yes) "
        "or 'tails'/'not heads up' (no), None if it says both; else None"
    )

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic",
                 num_people: int = 2):
        super().__init__(train_size, test_size, seed, source)
        check_choice(source, ("synthetic", "rar"), "coin_flip source")
        if num_people < 1:
            raise UserError(f"num_people must be at least 1, got {num_people}")
        self.num_people = num_people

    def load(self, split: str) -> list[Example]:
        check_choice(split, SPLITS, "split")
        if self.source == "rar":
            test = read_rar(RAR_TEST)
            if split == "test":
                return [self._example(split, i, it["question"], it["answer"])
                        for i, it in enumerate(test[: self.test_size])]
            # Exclude all 220 test questions, whatever test_size, so no test item is ever trained on.
            held_out = {_key(it["question"]) for it in test}
            pool = [it["inputs"].strip().removeprefix("Q: ") + RAR_SUFFIX for it in read_rar(RAR_POOL)]
            pool = [q for q in pool if _key(q) not in held_out]
            random.Random(f"{self.name}-{self.seed}-train").shuffle(pool)
            return [self._example(split, i, q, None) for i, q in enumerate(pool[: self.train_size])]
        rng = random.Random(f"{self.name}-{self.seed}-{split}")  # str seeds hash the same on every run
        size = self.train_size if split == "train" else self.test_size
        out = []
        for i, people in enumerate(sample_words(rng, name_pool(split), self.num_people, size)):
            # Fair, independent flips make the parity, hence yes/no, balanced in expectation.
            acts = [f"{p} flips the coin." if rng.random() < 0.5 else f"{p} does not flip the coin." for p in people]
            question = " ".join(["A coin is heads up.", *acts, "Is the coin still heads up?"])
            out.append(self._example(split, i, question, _parity(question)))
        return out

    def _example(self, split: str, i: int, question: str, answer: str | None) -> Example:
        acts = _ACTION.findall(question)
        # Train labels are dropped here: distillation must learn from the model's own votes only.
        return Example(id=f"{self.name}-{split}-{i:04d}", question=question, answer=answer if self.labeled(split) else None,
                       metadata={"num_people": len(acts), "words": [p for p, _ in acts],
                                 "flips": [a == "flips" for _, a in acts], "source": self.source})

    def extract_answer(self, text: str) -> str | None:
        marked = after_last_marker(text)
        if marked is not None:
            m = _YESNO.search(_PAIR.sub(" ", marked))
            if answer := (m.group(1).lower() if m else _phrase(marked)):
                return answer
        text = _PAIR.sub(" ", text)
        replies = list(_YESNO.finditer(text))
        if replies and re.fullmatch(r"[\W_]*", text[: replies[0].start()]):
            return replies[0].group(1).lower()
        if replies:
            return replies[-1].group(1).lower()
        return _phrase(text)


def _key(question: str) -> str:
    """RaR pool inputs (" Q: ... ") and test questions (with the suffix) in one comparable form."""
    return " ".join(question.split()).removeprefix("Q: ").removesuffix(RAR_SUFFIX.strip()).strip()


def _parity(question: str) -> str:
    return "yes" if sum(a == "flips" for _, a in _ACTION.findall(question)) % 2 == 0 else "no"

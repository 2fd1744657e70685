"""What the program-written numeric tasks share (``arithmetic``, ``lookup``): GSM8K's number rule,
worked exemplars solved by the program, and a fixed partition of each task's input space.

An input's part — train, test or exemplar — is a hash of its text, not the run's seed, so every
seed draws its unlabeled train inputs (and ``bench/demo_study.py`` its dev items, the train side at
another seed) from inputs no test split can hold, and no exemplar shown in a few-shot prompt is ever
a train or test input. The parts hold about 72%, 25% and 3% of the space.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sys2distill.errors import UserError
from sys2distill.records import Example
from sys2distill.tasks.base import Task, WorkedExample
from sys2distill.tasks.gsm8k import GSM8K, read_number, same_number
from sys2distill.tasks.names import SPLITS, check_choice, read_items

PARTS = ("train", "test", "exemplar")
DRAWS_PER_ITEM = 200  # attempts per wanted item before a split is declared too small for its size


def part(text: str) -> str:
    """The part of the input space ``text`` belongs to: the same on every run, seed and machine."""
    byte = hashlib.sha256(text.encode()).digest()[0]
    return "exemplar" if byte < 8 else "test" if byte < 72 else "train"


@dataclass(frozen=True)
class Item:
    """One generated input with its program-written solution."""

    question: str
    reasoning: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)


class NumberTask(Task):
    """A generated task whose answer is a number, read and compared by GSM8K's rule.

    Subclasses define ``draw(rng, part)``, one random input of a part (the part chooses, e.g., the
    names it may use), and ``space``, how many inputs the options allow (for the error when a split
    asks for more than its part holds). ``task.options.path`` replaces the generated test items with a
    file's (``{"question", "answer"}`` per item, JSON list or JSONL); train inputs then avoid its questions.
    """

    #: Bumped with GSM8K's rule (``gsm8k.py``), which this reads answers by.
    version: ClassVar[int] = 1
    extraction_rule = "GSM8K's number rule (gsm8k v%d): %s" % (GSM8K.version, GSM8K.extraction_rule)

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic",
                 path: str | None = None):
        super().__init__(train_size, test_size, seed, source)
        check_choice(source, ("synthetic",), f"{self.name} source")
        self.path = path
        self.items = read_items(path) if path else None

    # -- what a subclass defines -------------------------------------------------------------
    def draw(self, rng: random.Random, part: str) -> Item:
        raise NotImplementedError

    @property
    def space(self) -> int:
        raise NotImplementedError

    def options_hint(self) -> str:
        """Which options widen the space, for the error when a split is too small."""
        return "widen the task's options"

    # -- the splits --------------------------------------------------------------------------
    def load(self, split: str) -> list[Example]:
        check_choice(split, SPLITS, "split")
        if split == "test" and self.items is not None:
            if len(self.items) < self.test_size:
                raise UserError(f"task.options.path {self.path} has {len(self.items)} items, fewer than "
                                f"task.test_size={self.test_size}: set task.test_size={len(self.items)} or add items")
            return [Example(id=f"{self.name}-test-{i:04d}", question=it["question"], answer=it["answer"].strip(),
                            metadata={"source": self.path}) for i, it in enumerate(self.items[: self.test_size])]
        avoid = {it["question"] for it in self.items or ()}
        size = self.train_size if split == "train" else self.test_size
        items = self.distinct(random.Random(f"{self.name}-{self.seed}-{split}"), split, size, avoid)
        # Train labels are dropped here: distillation must learn from the model's own votes only.
        return [Example(id=f"{self.name}-{split}-{i:04d}", question=it.question,
                        answer=it.answer if self.labeled(split) else None, metadata=it.metadata)
                for i, it in enumerate(items)]

    def worked_examples(self, k: int) -> list[WorkedExample]:
        """``k`` inputs of the exemplar part with their program-written reasoning; fixed for a task's options."""
        items = self.distinct(random.Random(f"{self.name}-exemplars"), "exemplar", k, set())
        return [WorkedExample(it.question, it.reasoning, it.answer) for it in items]

    def distinct(self, rng: random.Random, split: str, size: int, avoid: set[str]) -> list[Item]:
        """``size`` distinct items of part ``split`` (none of whose questions is in ``avoid``)."""
        seen, out = set(avoid), []
        for _ in range(DRAWS_PER_ITEM * size + 1000):
            if len(out) == size:
                return out
            item = self.draw(rng, split)
            if item.question not in seen and part(item.question) == split:
                seen.add(item.question)
                out.append(item)
        if len(out) == size:
            return out
        share = {"train": 0.72, "test": 0.25, "exemplar": 0.03}[split]
        raise UserError(f"cannot draw {size} distinct {split} items for {self.name}: these options allow about "
                        f"{self.space:,} inputs, {share:.0%} of them {split} inputs; lower task.{split}_size "
                        f"or {self.options_hint()}")

    def extract_answer(self, text: str) -> str | None:
        return read_number(text)

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        return same_number(predicted, gold)

    def check_data(self) -> None:
        if self.items is not None:
            bad = next((i for i, it in enumerate(self.items, 1) if read_number(it["answer"]) is None), None)
            if bad is not None:
                raise UserError(f"{self.path} item {bad} has the answer {self.items[bad - 1]['answer']!r}, which is not "
                                f"a number: {self.name} items need numeric answers")


def check_range(task: str, low: int, high: int, what: str) -> None:
    if not (isinstance(low, int) and isinstance(high, int)) or isinstance(low, bool) or isinstance(high, bool):
        raise UserError(f"task.options.min_{what} and max_{what} of {task} must be integers, got {low!r} and {high!r}")
    if low > high:
        raise UserError(f"task.options.min_{what}={low} is above max_{what}={high}: swap them")

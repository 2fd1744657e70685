"""Chained arithmetic on small numbers: "What is 7 + 2 + 5?" → ``14`` (a positive-control family).

Written to test the mechanism the paper distils (arXiv 2407.06023 Sec. 3) where the base model is
small: answering at once is hard for it, and a worked solution that keeps a running total ("7 + 2 =
9. 9 + 5 = 14.") breaks the sum into steps it can do. Whether the direct answer can then be learnt
from a few hundred examples is what ``bench/demo_study.py`` measures (the gold-label ceiling).
Difficulty: ``num_terms``; the operand range and the operators widen it.
"""

from __future__ import annotations

import random

from sys2distill.errors import UserError
from sys2distill.tasks import register_task
from sys2distill.tasks.numeric import Item, NumberTask, check_range

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b}


@register_task("arithmetic")
class Arithmetic(NumberTask):
    """Add (and subtract) ``num_terms`` whole numbers from ``min_value`` to ``max_value``, left to right."""

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic",
                 num_terms: int = 3, min_value: int = 1, max_value: int = 9, operators: str = "+",
                 path: str | None = None):
        super().__init__(train_size, test_size, seed, source, path)
        if not isinstance(num_terms, int) or isinstance(num_terms, bool) or num_terms < 2:
            raise UserError(f"task.options.num_terms must be an integer of at least 2, got {num_terms!r}")
        check_range("arithmetic", min_value, max_value, "value")
        if not isinstance(operators, str) or not operators or set(operators) - set(OPERATORS):
            raise UserError(f"task.options.operators must be a string of {' and '.join(OPERATORS)} (e.g. '+' or '+-'), "
                            f"got {operators!r}")
        self.num_terms, self.min_value, self.max_value = num_terms, min_value, max_value
        self.operators = "".join(dict.fromkeys(operators))

    @property
    def space(self) -> int:
        return (self.max_value - self.min_value + 1) ** self.num_terms * len(self.operators) ** (self.num_terms - 1)

    def options_hint(self) -> str:
        return "widen task.options (num_terms, min_value/max_value, operators: '+-')"

    def draw(self, rng: random.Random, part: str) -> Item:
        terms = [rng.randint(self.min_value, self.max_value) for _ in range(self.num_terms)]
        ops = [rng.choice(self.operators) for _ in range(self.num_terms - 1)]
        expression = " ".join([str(terms[0]), *(f"{op} {t}" for op, t in zip(ops, terms[1:]))])
        total, steps = terms[0], []
        for op, t in zip(ops, terms[1:]):
            new = OPERATORS[op](total, t)
            steps.append(f"{total} {op} {t} = {new}.")
            total = new
        return Item(question=f"What is {expression}?", reasoning=" ".join(steps), answer=str(total),
                    metadata={"terms": terms, "operators": ops})

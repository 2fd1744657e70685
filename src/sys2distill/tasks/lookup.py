"""Fact lookup among distractors: "Ava has 12 coins. Ben has 7 coins. … How many coins does Ben have?" → ``7``.

A positive-control family for the paper's mechanism (arXiv 2407.06023 Sec. 3) at small scale, close
to System 2 Attention's (Sec. 4.2): the answer is in the input, among ``num_facts - 1`` facts of the
same shape that do not matter. A small model answering at once often gives another person's number;
a worked solution that first names the person asked about and restates that one fact ("The question
asks about Ben. Ben has 7 coins.") finds it more often. The direct answer is a two-step retrieval a
transformer learns from a few hundred examples (the gold-label ceiling in ``bench/demo_study.md``).
Train and test people come from the two disjoint halves of the name list (``names.name_pool``);
values are distinct within an item, so no other fact gives the same number.
"""

from __future__ import annotations

import random

from sys2distill.errors import UserError
from sys2distill.tasks import register_task
from sys2distill.tasks.names import name_pool
from sys2distill.tasks.numeric import Item, NumberTask, check_range

OBJECTS = ("apples", "books", "buttons", "cards", "coins", "cookies", "crayons", "marbles", "pencils", "shells",
           "stamps", "stickers", "stones", "tickets", "toys")


@register_task("lookup")
class Lookup(NumberTask):
    """``num_facts`` people each have a different number of one kind of object; how many has one of them?"""

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic",
                 num_facts: int = 4, min_value: int = 2, max_value: int = 30, path: str | None = None):
        super().__init__(train_size, test_size, seed, source, path)
        if not isinstance(num_facts, int) or isinstance(num_facts, bool) or num_facts < 1:
            raise UserError(f"task.options.num_facts must be a positive integer, got {num_facts!r}")
        check_range("lookup", min_value, max_value, "value")
        if max_value - min_value + 1 < num_facts:
            raise UserError(f"task.options: {num_facts} facts need {num_facts} distinct values, but min_value..max_value "
                            f"holds {max_value - min_value + 1}: widen the range or lower num_facts")
        self.num_facts, self.min_value, self.max_value = num_facts, min_value, max_value

    @property
    def space(self) -> int:
        people = len(name_pool("train"))
        values = self.max_value - self.min_value + 1
        space = len(OBJECTS) * self.num_facts
        for i in range(self.num_facts):
            space *= (people - i) * (values - i)
        return space

    def options_hint(self) -> str:
        return "widen task.options.min_value/max_value"

    def draw(self, rng: random.Random, part: str) -> Item:
        # Exemplars use train-side names: what a few-shot prompt shows is never a test person.
        names = rng.sample(name_pool("test" if part == "test" else "train"), self.num_facts)
        values = rng.sample(range(self.min_value, self.max_value + 1), self.num_facts)
        thing = rng.choice(OBJECTS)
        asked = rng.randrange(self.num_facts)
        who, value = names[asked], values[asked]
        facts = " ".join(f"{n} has {v} {thing}." for n, v in zip(names, values))
        return Item(question=f"{facts} How many {thing} does {who} have?",
                    reasoning=f"The question asks about {who}. {who} has {value} {thing}.", answer=str(value),
                    metadata={"names": names, "values": values, "object": thing, "asked": asked})

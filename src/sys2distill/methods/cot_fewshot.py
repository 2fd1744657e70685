"""Few-shot Chain-of-Thought (Wei et al. 2022), the "CoT 8-shot" row of arXiv 2407.06023 Table 4.

Two sources of worked exemplars:

- A task that solves its own inputs by program (``Task.worked_examples``: ``arithmetic``, ``lookup``)
  gives ``shots`` of them, shown as earlier chat turns (user: question; assistant: reasoning, then
  "The answer is X."), the layout chat models are tuned on (lm-evaluation-harness's
  ``--fewshot_as_multiturn``); ``layout: inline`` writes them into the one user turn instead.
- Otherwise the eight GSM8K exemplars of Wei et al. 2022 (arXiv 2201.11903, Table 20), each ending in
  "The answer is N.", inline in one user turn ("Q: ...\nA: ...\n\n"), as published. Replace them per run
  with ``prompts: {cot_fewshot: {exemplars: "Q: ...\nA: ...\n\n"}}``; the block is inserted verbatim
  (braces in it are not placeholders) and wins over a task's own exemplars.

``direct_fewshot`` (``methods/direct_fewshot.py``) shows the same exemplars with their answers only: a
System 1 that differs from this method in the reasoning alone.
"""

from typing import ClassVar

from sys2distill.backends.base import Messages
from sys2distill.errors import UserError
from sys2distill.methods import register_method
from sys2distill.methods.base import SingleStepMethod
from sys2distill.records import Example
from sys2distill.tasks.base import WorkedExample

_SHOTS = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
     "were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
]

# Wei et al.'s exemplars as reasoning + answer: each reply ends in " The answer is N.".
WEI_EXAMPLES = [WorkedExample(q, *a.removesuffix(".").rsplit(" The answer is ", 1)) for q, a in _SHOTS]

PROMPTS = {
    "exemplars": "".join(f"Q: {ex.question}\nA: {ex.solution()}\n\n" for ex in WEI_EXAMPLES),
    "answer": "{exemplars}Q: {question}\nA:",
}
LAYOUTS = ("auto", "turns", "inline")


class FewShotMethod(SingleStepMethod):
    """One answer after worked exemplars; ``reply`` is what an exemplar's assistant turn shows."""

    PROMPTS = PROMPTS
    OPTIONS: ClassVar[dict[str, object]] = {"shots": 4, "layout": "auto"}

    def __init__(self, task, prompts=None, options=None):
        super().__init__(task, prompts, options)
        shots, layout = self.options["shots"], self.options["layout"]
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 1:
            raise UserError(f"method_options.{self.name}.shots must be a positive integer, got {shots!r}")
        if layout not in LAYOUTS:
            raise UserError(f"method_options.{self.name}.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        overridden = sorted({"exemplars", "answer"} & set(self.overrides))
        if layout == "turns" and overridden:  # chat turns have no template for an override to replace
            raise UserError(f"prompts.{self.name}.{overridden[0]} is a template of the inline layout: set "
                            f"method_options.{self.name}.layout to inline (or auto), or drop the override")

    @staticmethod
    def reply(example: WorkedExample) -> str:
        raise NotImplementedError

    def examples(self) -> tuple[list[WorkedExample], str]:
        """The exemplars and their layout: the task's own in chat turns, else Wei et al.'s inline; an
        overridden ``answer`` template keeps the task's exemplars but writes them inline, into it."""
        own = [] if "exemplars" in self.overrides else self.task.worked_examples(self.options["shots"])
        layout = self.options["layout"]
        if layout == "auto":
            layout = "turns" if own and "answer" not in self.overrides else "inline"
        return own or WEI_EXAMPLES, layout

    def exemplar_block(self, examples: list[WorkedExample]) -> str:
        return "".join(f"Q: {ex.question}\nA: {self.reply(ex)}\n\n" for ex in examples)

    def prompt(self, key: str, example: Example, **fields: object) -> Messages:
        examples, layout = self.examples()
        if layout == "turns":
            turns: Messages = []
            for ex in examples:
                turns += [{"role": "user", "content": ex.question}, {"role": "assistant", "content": self.reply(ex)}]
            return turns + [{"role": "user", "content": example.question}]
        # The exemplar block is a field, not part of the template, so it is never re-formatted.
        block = self.overrides.get("exemplars") or self.exemplar_block(examples)
        return super().prompt(key, example, **{"exemplars": block, **fields})


@register_method("cot_fewshot")
class CoTFewShot(FewShotMethod):
    label = "CoT few-shot"

    @staticmethod
    def reply(example: WorkedExample) -> str:
        return example.solution()

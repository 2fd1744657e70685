"""What every task provides: seedable splits of ``Example`` records, answer extraction, scoring."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from sys2distill.records import Example

# "The answer (Yes or No) is": a parenthetical after "answer" names the expected format, not the answer.
FORMAT_NOTE = r"(?:\s*\([^()\n]*\))?"
# "The answer is X", "Final answer: X", "Answer: X" — the last such phrase wins, since
# System 2 outputs often restate the question ("...what is the answer?") before answering.
ANSWER_MARKER = re.compile(
    rf"(?:final answer{FORMAT_NOTE}|\banswer{FORMAT_NOTE}\s*(?:is\b|would be\b|:)|result is|result:)\s*[:\-]?\s*(.+)",
    re.IGNORECASE,
)


def after_last_marker(text: str) -> str | None:
    """The text after the last "answer is"/"Final answer:" phrase, first line only; None if absent
    or if nothing but spaces follows it (an output cut off right after "The answer is ")."""
    hits = list(ANSWER_MARKER.finditer(text))
    lines = hits[-1].group(1).strip().splitlines() if hits else []
    return lines[0] if lines else None


def normalize(text: str) -> str:
    """Casefold and strip punctuation, quotes, markdown emphasis and surrounding space.

    NFC first: a model may write "é" as "e" + a combining accent, which must equal the gold's "é".
    """
    text = unicodedata.normalize("NFC", text).casefold().replace("**", "")
    # Keep a leading minus on a number: "-5" and "5" are different answers (GSM8K has both).
    sign = "-" if re.match(r"\s*-\d", text) else ""
    return sign + text.strip().strip(string.punctuation + "“”‘’ \t").strip()


def tally(answers: list[str | None]) -> Counter:
    """Votes per normalized answer; failed extractions (None, or nothing left after normalizing) vote
    for nobody. The one vote counter of the filters, evaluation's k-vote and adaptive sampling."""
    return Counter(normalize(a) for a in answers if a is not None and normalize(a))


@dataclass(frozen=True)
class WorkedExample:
    """A solved exemplar for few-shot prompts: the reasoning a System 2 method should write, and the
    answer alone (which a few-shot System 1 prompt shows without the reasoning)."""

    question: str
    reasoning: str
    answer: str

    def solution(self) -> str:
        """The worked solution as the exemplar's reply: the reasoning, then "The answer is X."."""
        return f"{self.reasoning} The answer is {self.answer}."


class Task:
    """A task: ``load(split)`` gives examples; ``extract_answer`` and ``is_correct`` score text.

    Labels (``Example.answer``) are for the evaluator and the diagnostic gold control only: distillation
    never reads them.
    """

    name: ClassVar[str]
    #: One line describing the extraction rule; reports print it next to accuracy because
    #: scores swing with the rule (a lesson from lm-evaluation-harness).
    extraction_rule: ClassVar[str]
    version: ClassVar[int] = 1
    metric: ClassVar[str] = "accuracy"  # what reports call the share of correct answers

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic"):
        self.train_size, self.test_size, self.seed, self.source = train_size, test_size, seed, source

    #: Set only by reports measuring the filter's precision (how often a kept answer was right):
    #: the pipeline itself never sees a train label.
    reveal_train_labels: bool = False

    def labeled(self, split: str) -> bool:
        return split == "test" or self.reveal_train_labels

    def load(self, split: str) -> list[Example]:
        """``split`` is ``train`` (unlabeled distillation inputs) or ``test`` (held out)."""
        raise NotImplementedError

    def extract_answer(self, text: str) -> str | None:
        raise NotImplementedError

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        return predicted is not None and normalize(predicted) == normalize(gold)

    def correct(self, predicted: str | None, example: Example) -> bool:
        """Score against a test example; tasks whose gold is more than one string (alias lists,
        reference answers in ``metadata``) override this."""
        return self.is_correct(predicted, example.answer)

    def format_answer(self, answer: str) -> str:
        """The text a distilled model is trained to write for an extracted answer (``target: answer_only``)."""
        return answer

    def inconsistent(self, examples: list[Example], answers: dict[str, str | None]) -> dict[str, bool] | None:
        """For tasks whose inputs come in perturbed pairs (a judge's two response orders): pair id →
        whether the answers disagree. None: the task has no pairs."""
        return None

    #: The names ``prompt_fields`` provides, known before any example is loaded: a chain step's
    #: template is checked against them when the chain is built.
    prompt_field_names: ClassVar[tuple[str, ...]] = ()

    def prompt_fields(self, example: Example) -> dict[str, object]:
        """Extra placeholders prompts may use besides ``{question}`` (e.g. ``{num_words}``)."""
        return {}

    @property
    def prompt_variant(self) -> str:
        """Which ``"name@variant"`` prompts methods use for this task: its own name unless it poses
        another task's problem (a ``dataset`` of response pairs takes the judge prompts)."""
        return self.name

    def worked_examples(self, k: int) -> list[WorkedExample]:
        """``k`` program-solved exemplars for few-shot prompts, drawn apart from both splits, the same on
        every run; ``[]`` when the task has none (few-shot methods then use their own)."""
        return []

    def check_data(self) -> None:
        """Read the data now, so a bad file or template fails before any model is loaded."""

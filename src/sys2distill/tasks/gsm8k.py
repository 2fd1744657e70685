"""GSM8K grade-school maths (Cobbe et al. 2021), the CoT task of arXiv 2407.06023 Sec. 4.4, Table 4.

A preset of the ``dataset`` task: the official JSONL files (``{"question", "answer": "... #### 18"}``)
of a folder holding ``train.jsonl`` and ``test.jsonl``, answer type ``number``, whose rule is the
one defined here. The default folder is the vendored copy in ``data/gsm8k/``
(openai/grade-school-math, MIT, licence kept beside it). Train items become unlabeled
distillation inputs (7,473; a seeded sample of ``train_size``); test items are the first
``test_size`` of 1,319, in file order, so runs of different sizes share a prefix.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sys2distill.errors import UserError
from sys2distill.tasks import register_task
from sys2distill.tasks.dataset import DatasetTask

DATA_DIR = Path(__file__).parent / "data" / "gsm8k"

# A number as models write it: optional sign and currency, thousands commas, decimals.
# Not preceded by a letter or digit ("x2"); a minus is a sign only when attached ("-5", "-$5", not
# the "- 3" of "20 - 3" nor the "-3" of "8-3"); a trailing period or unit ("18.", "18%") is dropped.
_NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-−])?(?:[$€£]\s?)?(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                      "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
# The base task's marker eats a "-" after the phrase ("is -5" → "5"); this one keeps it.
_MARKER = re.compile(r"(?:final answer|the answer is|answer is|answer:|answer would be)\s*:?\s*(.+)", re.I)


def canonical(text: str) -> str | None:
    """The first number in ``text`` as a plain decimal string ("$1,000.50" → "1000.5"); None if none."""
    m = _NUMBER.search(text)
    if m is None:
        word = re.search(r"\b(" + "|".join(_WORDS) + r")\b", text, re.I)
        return str(_WORDS[word.group(1).lower()]) if word else None
    try:
        value = Decimal(m.group("int").replace(",", "") + (m.group("frac") or ""))
    except InvalidOperation:
        return None
    if m.group("sign") and value != 0:
        value = -value
    return format(value.normalize(), "f")  # "18.00" and "18" are the same answer: both "18"


def _marked(text: str) -> str | None:
    """The span that states the answer: last \\boxed{}, else after the last ####, else after the
    last "Final answer:" / "The answer is" phrase; the part after its last "=" when it has one."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1]
    if "####" in text:
        span = text.rsplit("####", 1)[1].strip().split("\n")[0]
    elif hits := list(_MARKER.finditer(text)):
        span = hits[-1].group(1).strip().split("\n")[0]
    else:
        return None
    return span.rsplit("=", 1)[1] if "=" in span and _NUMBER.search(span.rsplit("=", 1)[1]) else span


@register_task("gsm8k")
class GSM8K(DatasetTask):
    """Grade-school word problems with an integer (rarely decimal) final answer."""

    extraction_rule = (
        "the span after the last \\boxed{}, '####', 'Final answer:' or 'The answer is' (after its last '=' if any), "
        "else the whole text; its first number there (last number for the whole text), with $ € £, thousands "
        "commas, units and a trailing period dropped, '18.00' = '18'; number words up to twenty; else None"
    )

    sources = ("gsm8k", "synthetic")  # "synthetic" = the config default; same data
    source_label = "gsm8k"

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "gsm8k",
                 data_dir: str | None = None):
        self.data_dir = Path(data_dir).expanduser() if data_dir else DATA_DIR
        super().__init__(train_size, test_size, seed, source, path=str(self.data_dir / "train.jsonl"),
                         test_path=str(self.data_dir / "test.jsonl"), question="{question}", answer="answer",
                         answer_type="number")

    def rows(self, split: str):
        for path in (self.path, self.test_path):
            if not Path(path).is_file():
                raise UserError(f"GSM8K file {path} not found: set task.options.data_dir to a folder with train.jsonl "
                                "and test.jsonl (official format)")
        return super().rows(split)

    def extract_answer(self, text: str) -> str | None:
        span = _marked(text)
        if span is not None and (answer := canonical(span)) is not None:
            return answer
        # No marker (a direct System 1 answer, or a cut-off chain): the last number written.
        numbers = list(_NUMBER.finditer(text))
        return canonical(numbers[-1].group(0)) if numbers else None

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        if predicted is None:
            return False
        p, g = canonical(predicted), canonical(gold)
        return p is not None and p == g

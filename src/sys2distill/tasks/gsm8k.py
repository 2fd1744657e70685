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
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from sys2distill.errors import UserError
from sys2distill.tasks import register_task
from sys2distill.tasks.base import FORMAT_NOTE
from sys2distill.tasks.dataset import DatasetTask

DATA_DIR = Path(__file__).parent / "data" / "gsm8k"

# A number as models write it: optional sign and currency, thousands commas, decimals, a fraction
# ("3/4" is 0.75). Not preceded by a letter or digit ("x2"); a minus is a sign only when attached
# ("-5", "-$5", not the "- 3" of "20 - 3" nor the "-3" of "8-3"); a trailing period or unit ("18.",
# "18%") is dropped; a date's "12/25/2023" is not a fraction.
_NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-−])?(?:[$€£]\s?)?(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
                     r"(?:/(?P<den>[1-9]\d*)(?![/\d]))?")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                      "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}")  # \frac{3}{4} → 3/4, also inside \boxed{}
# The base task's marker eats a "-" after the phrase ("is -5" → "5"); this one keeps it.
_MARKER = re.compile(rf"(?:final answer{FORMAT_NOTE}(?:\s+(?:is|would be)\b)?"
                     rf"|\banswer{FORMAT_NOTE}\s*(?:is\b|would be\b|:))\s*:?\s*(.+)", re.I)
# A sentence ends at . ! ? before a space (not the point of "4.50") or at a line break.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_OPENS_WITH_NUMBER = re.compile(r"[\s*_`\"'(]*[-−$€£\d]")
# After these a sentence that opens with words states its result: "After 3 weeks, the total is 109".
_RESULT = re.compile(r"=|\b(?:is|are|was|were|be|equals?|totals?|has|have|had|gets?|got|makes?|made|earns?|earned"
                     r"|costs?|pays?|paid|spends?|spent|needs?|needed)\b", re.I)
# A clause that explains the answer before it: "18, because 9 * 2 = 18", "12, which is 3 more".
_REASON = re.compile(r"\b(?:because|since|which)\b", re.I)
# "1. Janet sells ..." then "2. ...": a numbered list, whose first "1." is not an answer.
_LIST = re.compile(r"\s*1[.)]\s.*\n\s*2[.)]\s", re.S)
# A sentence that explains the one before it: "This is because ...", "Explanation: ...".
_EXPLANATION = re.compile(r"\W*(?:(?:(?:this|that|it)(?:'s|’s| is| was)\s+)?because|explanation|reasoning"
                          r"|here(?:'s|’s| is) (?:how|why))\b", re.I)


def canonical(text: str) -> str | None:
    """The first number in ``text`` in one canonical spelling ("$1,000.50" → "1000.5", "3/4" → "0.75",
    "2/6" → "1/3"); None if none."""
    m = _NUMBER.search(text)
    if m is None:
        word = re.search(r"\b(" + "|".join(_WORDS) + r")\b", text, re.I)
        return str(_WORDS[word.group(1).lower()]) if word else None
    value = Fraction(Decimal(m.group("int").replace(",", "") + (m.group("frac") or "")))
    if m.group("den"):
        value /= int(m.group("den"))
    if m.group("sign"):
        value = -value
    return _spell(value)


def _spell(value: Fraction) -> str:
    """A decimal when the value has one ("18.00" and "18" are both "18"; 3/4 is "0.75"), else "p/q"."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:  # 1/3 has no finite decimal: the reduced fraction is its one spelling
        return f"{value.numerator}/{value.denominator}"
    return format((Decimal(value.numerator) / value.denominator).normalize(), "f")


def _marked(text: str) -> str | None:
    """What follows the last \\boxed{}, ####, or "Final answer:" / "The answer is" phrase, to the end of
    its line; None when the text has none of them."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1]
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().split("\n")[0]
    if hits := list(_MARKER.finditer(text)):
        return hits[-1].group(1).strip().split("\n")[0]
    return None


def _stated(span: str) -> str | None:
    """The number a marked span states. Its first sentence only, up to a "because/since/which"
    clause after its first number: what follows explains it. There, the number right after the marker, or, when the
    sentence opens with words ("After 3 weeks, the total is 109"), the first number after its
    first result word (is, =, has...), else its last number; an equation ("15 * 8 = 120 pints")
    gives the result after its last "="."""
    span = _SENTENCE_END.split(span, 1)[0]
    if (first := _NUMBER.search(span)) and (reason := _REASON.search(span, first.end())):
        span = span[: reason.start()]
    if not _OPENS_WITH_NUMBER.match(span):
        cue = next((c for c in _RESULT.finditer(span) if _NUMBER.search(span, c.end())), None)
        if cue is None:
            numbers = list(_NUMBER.finditer(span))
            return canonical(numbers[-1].group(0) if numbers else span)
        span = span[cue.end():]
    if "=" in span and (result := canonical(span.rsplit("=", 1)[1])) is not None:
        return result
    return canonical(span)


def _unmarked(text: str) -> str | None:
    """The answer of a text without a marker. A reply that opens with its answer gives it first: a
    first sentence holding one number that is either the number and at most two words ("18",
    "$18 per day.") or followed by an explanation ("... This is because"). Otherwise the last
    number, where a chain of reasoning ends ("Chair = 3 feet" opens a chain, not an answer)."""
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if sentences and not _LIST.match(text):
        numbers = list(_NUMBER.finditer(sentences[0]))
        bare = re.fullmatch(r"\W*(?:[A-Za-z]+\W*){0,2}", sentences[0][numbers[0].end():]) if numbers else None
        explained = len(sentences) > 1 and _EXPLANATION.match(sentences[1])
        if len(numbers) == 1 and ((bare and _OPENS_WITH_NUMBER.match(sentences[0])) or explained):
            return canonical(numbers[0].group(0))
    numbers = list(_NUMBER.finditer(text))
    return canonical(numbers[-1].group(0)) if numbers else None


@register_task("gsm8k")
class GSM8K(DatasetTask):
    """Grade-school word problems with an integer (rarely decimal) final answer."""

    version = 2
    extraction_rule = (
        "the first sentence after the last \\boxed{}, '####', 'Final answer:' or 'The answer is', up to a "
        "because/since/which clause: the number right after the marker or, if the sentence opens with words, the "
        "first after its first is/=/has/makes..., else its last; an equation's result after its last '='; no "
        "marker: a first sentence of one number that opens it with at most two words ('18 dollars.') or is "
        "followed by 'This is because...', else the last number; $ € £, commas, units dropped, '18.00' = '18', "
        "3/4 = 0.75, number words up to twenty; else None"
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
        return read_number(text)

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        return same_number(predicted, gold)


def read_number(text: str) -> str | None:
    """The final answer a text states, by ``GSM8K.extraction_rule`` (also the rule of every numeric task)."""
    text = _LATEX_FRAC.sub(r"\1/\2", text)
    span = _marked(text)
    if span is not None and (answer := _stated(span)) is not None:
        return answer
    return _unmarked(text)  # a direct System 1 answer, a chain without a marker, or a cut-off one


def same_number(predicted: str | None, gold: str) -> bool:
    """Whether two answers are the same number in any spelling ("$1,000.00" = "1000")."""
    if predicted is None:
        return False
    p, g = canonical(predicted), canonical(gold)
    return p is not None and p == g

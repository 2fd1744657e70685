"""Last letter concatenation (arXiv 2407.06023 Sec. 4.1, the RaR tasks).

"Take the last letters of the words in "Edgar Bob" and concatenate them." → ``rb``. The
wording and the ``rar`` test files are those of Rephrase and Respond (Deng et al. 2023,
arXiv 2311.04205), whose released GPT-4 test sets the paper evaluates on; ``task.options.path``
reads other items in that format.
"""

from __future__ import annotations

import random
import re
import unicodedata

from sys2distill.errors import UserError
from sys2distill.records import Example
from sys2distill.tasks import register_task
from sys2distill.tasks.base import Task, after_last_marker, normalize
from sys2distill.tasks.names import SPLITS, all_names, check_choice, name_pool, read_items, read_rar, sample_words

QUESTION = 'Take the last letters of the words in "{words}" and concatenate them.'
RAR_FILES = {2: "last_letter_concatenation_gpt-4.json", 4: "last_letter_concatenation4_gpt-4.json"}

# A letter in any script: the last letter of "José" is "é", which [A-Za-z] would split off.
L = r"[^\W\d_]"
# A leading run of letters; kept with its separators so "r b" / "r, b" / "r-b" can be joined.
_LEAD = re.compile(rf"[\W\d_]*({L}+(?:[ ,+\-]+{L}+)*)")
_SPACED = re.compile(rf"{L}(?:[ ,+\-]+{L})+")
# One quoted, backticked or **bold** word (or spaced letters); a single quote only when not an
# apostrophe, so "Edgar's ... Bob's" is not read as a quotation.
_OPEN, _CLOSE = rf"""(?:\*\*|["“”`]|(?<!{L})')""", rf"""(?:\*\*|["“”`]|'(?!{L}))"""
_QUOTED = re.compile(_OPEN + rf"({L}+|{L}(?:[ ,+\-]+{L})+)" + _CLOSE)
# Words that stand between a marker and the answer without being it: adverbs ("is simply
# yajo", "is just 'rb'") and a description of the answer ("is a 4-letter string: yajo"). Skipped
# only when a word or a colon follows, so an answer that is such a word is still read ("is only.").
_FILLER = re.compile(
    r"(?:\s*(?:\b(?:just|simply|only|merely|actually|basically|clearly|obviously|exactly|indeed|therefore|thus|hence"
    r"|probably|likely|definitely|certainly)\b|\ban?\s+(?:[\w-]+\s+){0,3}?(?:string|word|sequence|combination"
    r"|concatenation|result)s?\b)(?=\s+\S|\s*:))+\s*:?", re.I)
# Words after which a sentence states its result: "gives rb", "= rb", "together: rb".
_CUE = re.compile(r"=|:|→|->|\b(?:is|are|gives?|giving|gets?|got|yields?|forms?|makes?|becomes?|spells?)\b", re.I)
# Words that open a sentence or a chat reply, not an answer (none is a likely 2- or 4-letter
# answer; 2-letter words such as "no" are real answers: "Shannon Alejandro" → "no").
_OPENERS = {"the", "this", "these", "taking", "concatenating", "combining", "joining", "putting", "after", "since",
            "because", "based", "sure", "okay", "well", "hello", "certainly", "alright"}
_IS_THE_ANSWER = re.compile(rf"({L}+)\W*\s+is\s+(?:the|my|our)\s+(?:final\s+)?answer", re.I)


def _lead(span: str) -> str | None:
    """The first answer-like token of ``span`` after any filler words; single letters "r b"/"r + b" are joined."""
    if filler := _FILLER.match(span):
        span = span[filler.end():]
    m = _LEAD.match(span)
    if not m:
        return None
    run = m.group(1).lower()
    return "".join(re.findall(L, run)) if _SPACED.fullmatch(run) else run.split()[0].strip(",+-")


def _from_line(line: str) -> str | None:
    """The answer a line states, or None when it states none (e.g. a restated question)."""
    if m := _IS_THE_ANSWER.search(line):
        return m.group(1).lower()
    cues = list(_CUE.finditer(line))
    if cues:
        return _lead(line[cues[-1].end():])
    quoted = _QUOTED.findall(line)
    if quoted:
        return _lead(quoted[-1])
    bare = normalize(line)  # a line that is nothing but the answer: "rb", "**RB**.", "r b"
    return _lead(bare) if re.fullmatch(rf"{L}+|" + _SPACED.pattern, bare) else None


@register_task("last_letter")
class LastLetter(Task):
    """Concatenate the last letters of ``num_words`` first names."""

    version = 2
    extraction_rule = (
        "after the last answer marker (and '='), past filler words ('simply', 'just', 'a 4-letter string:'): the "
        "first word, joined single letters 'r b', or, if that opens a sentence ('The ...'), its last quoted word or "
        "last word; else a first line that is only a num_words-letter word; else the last line stating one: 'X is "
        "the answer', the first word after its last cue (=, :, is, gives, get...), its last quoted/bold word, or "
        "the line itself if only a word; letters of any script (José → é); lowercase; else None"
    )

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic",
                 num_words: int | None = None, path: str | None = None):
        super().__init__(train_size, test_size, seed, source)
        check_choice(source, ("synthetic", "rar"), "last_letter source")
        self.path, self.items = path, None
        if source == "synthetic" and path is not None:
            raise UserError("task.options.path is read only with task.source=rar (items in RaR's format): "
                            "set task.source=rar, or drop the path to generate items")
        if path is not None:
            self.items = read_items(path)
            num_words = self._words_per_item(num_words)
        elif source == "rar":
            num_words = 2 if num_words is None else num_words
            check_choice(num_words, RAR_FILES, "num_words for source 'rar'")  # it picks the file
            self.items = read_rar(RAR_FILES[num_words])
        elif num_words is None:
            num_words = 2
        if num_words < 1:
            raise UserError(f"num_words must be at least 1, got {num_words}")
        self.num_words = num_words

    def _words_per_item(self, num_words: int | None) -> int:
        """The answer length of a file's items; a ``num_words`` that disagrees with it is an error."""
        lengths = set()
        for i, it in enumerate(self.items, 1):
            if not re.search(r'"[^"]+"', it["question"]) or not re.fullmatch(rf"{L}+", it["answer"].strip()):
                raise UserError(f'{self.path} item {i} is not a last-letter item: the question needs the words in '
                                'double quotes ("Edgar Bob") and the answer only letters')
            lengths.add(len(it["answer"].strip()))
        if len(lengths) > 1:  # synthetic train inputs are made with one word count
            raise UserError(f"{self.path} mixes items of {sorted(lengths)} words: split it into one file per word count")
        if num_words is not None and {num_words} != lengths:
            raise UserError(f"task.options.num_words={num_words} but {self.path} has {lengths.pop()}-word items: "
                            "drop task.options.num_words (the items fix it)")
        return lengths.pop()

    def load(self, split: str) -> list[Example]:
        check_choice(split, SPLITS, "split")
        if self.items is not None and split == "test":
            return [self._example(split, i, _quoted_words(it["question"]), it["question"], it["answer"])
                    for i, it in enumerate(self.items[: self.test_size])]
        if self.items is not None:
            # Train on every name the test items do not use, so their words stay held out.
            used = {w.lower() for it in self.items for w in _quoted_words(it["question"])}
            pool = [w for w in all_names() if w.lower() not in used]
        else:
            pool = name_pool(split)
        rng = random.Random(f"{self.name}-{self.seed}-{split}")  # str seeds hash the same on every run
        size = self.train_size if split == "train" else self.test_size
        return [self._example(split, i, words, QUESTION.format(words=" ".join(words)),
                              "".join(w[-1] for w in words).lower())
                for i, words in enumerate(sample_words(rng, pool, self.num_words, size))]

    def _example(self, split: str, i: int, words: list[str], question: str, answer: str | None) -> Example:
        # Train labels are dropped here: distillation must learn from the model's own votes only.
        return Example(id=f"{self.name}-{split}-{i:04d}", question=question, answer=answer if self.labeled(split) else None,
                       metadata={"num_words": self.num_words, "words": words, "source": self.source})

    def extract_answer(self, text: str) -> str | None:
        text = unicodedata.normalize("NFC", text)  # "e" + combining accent is one letter, "é"
        marked = after_last_marker(text)
        # "The answer is as follows:" introduces the answer on later lines: read those instead.
        if marked is not None and not marked.rstrip().endswith(":"):
            # The base marker stops after "final answer", leaving "is rb" in "final answer is rb".
            marked = re.sub(r"^\s*(?:is|was)\s+(?=\S)", "", marked, flags=re.I)
            answer = _lead(marked.split("=")[-1])
            if answer in _OPENERS:
                quoted = _QUOTED.findall(marked)
                answer = _lead(quoted[-1]) if quoted else re.findall(rf"{L}+", marked.lower())[-1]
            if answer:
                return answer
        lines = [ln for ln in text.splitlines() if ln.strip()]
        # Answer first, explanation after ("rb\n\nExplanation: Edgar ends in r ..."): a bare first
        # line of the expected length is the answer; other lengths could be a stray "r" or "Sure".
        first = normalize(lines[0]) if lines else ""
        if re.fullmatch(rf"{L}+", first) and len(first) == self.num_words and first not in _OPENERS:
            return first
        for line in reversed(lines):
            if answer := _from_line(line):
                return answer
        return None

    prompt_field_names = ("num_words",)

    def prompt_fields(self, example: Example) -> dict[str, object]:
        return {"num_words": example.metadata["num_words"]}


def _quoted_words(question: str) -> list[str]:
    # RaR's 4-word file has two 5-token items ("Juan Carlos" is one name); its gold keeps 4 letters.
    return re.search(r'"([^"]*)"', question).group(1).split()

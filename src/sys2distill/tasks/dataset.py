"""Your own data as a task, configured in YAML (arXiv 2407.06023 Sec. 3: distillation needs only
unlabeled inputs; gold answers score the held-out test items).

Rows come from a JSONL/CSV/Parquet file or a Hugging Face dataset (``datasets.load_dataset``);
``question`` is a ``str.format`` template over a row's fields; ``answer`` names the gold field
(train rows need none). The answer type picks the extraction rule, each one a built-in task's
(one implementation per rule):

- ``number``: GSM8K's rule (``gsm8k.py``); ``yes_no``: coin flip's (``coin_flip.py``);
  ``judge_pair``: the pairwise judge's verdict parser, every pair in both orders
  (``pairwise_judge.py``); ``exact``: the text after the last answer marker (``base.py``);
- ``choice``: one of a fixed list of answers, or a letter for each row's list of options;
- ``regex``: the one group of the pattern's last match.

Test items come from ``test_path`` (a second file or Hub id), ``test_split`` (another split), or
else a seeded ``test_ratio`` of the rows. Train inputs are a seeded sample, test items the first
``test_size`` in file order, so runs of different sizes share a prefix (as for GSM8K, a preset of
this task). Every problem with the data is a ``UserError`` raised by ``check_data``, which the
pipeline calls before it loads a model.
"""

from __future__ import annotations

import functools
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from sys2distill.errors import UserError
from sys2distill.records import Example, iter_jsonl
from sys2distill.tasks import REGISTRY, register_task
from sys2distill.tasks.base import Task, after_last_marker, normalize
from sys2distill.tasks.names import SPLITS, check_choice
from sys2distill.tasks.pairwise_judge import both_orders, inconsistent_pairs, parse_verdict

ANSWER_TYPES = ("number", "choice", "yes_no", "exact", "regex", "judge_pair")
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
READS = "a JSONL (.jsonl, .json), CSV (.csv) or Parquet (.parquet) file, or a Hugging Face dataset id"
# Suffixes of files people keep data in that are not read: such a path is a file, never a Hub id.
OTHER_FILES = {".txt", ".tsv", ".xlsx", ".xls", ".ods", ".arrow", ".feather", ".pkl", ".md", ".gz", ".zip", ".yaml", ".yml"}
LETTERS = string.ascii_uppercase


@functools.cache
def _rule_task(name: str) -> Task:
    """A built-in task whose extraction rule an answer type reuses (built lazily: ``gsm8k`` is itself
    a ``dataset`` preset, so building it while answer types are made would recurse)."""
    return REGISTRY[name]()


@dataclass(frozen=True)
class AnswerType:
    """One answer type: how to read a model's answer, a gold value, and compare the two."""

    rule: str  # the extraction rule in words, printed next to accuracy in every report
    extract: Callable[[str], str | None]
    gold: Callable[[Any], str | None]  # a row's gold value → canonical answer; None: cannot parse
    expects: str  # what a gold value must look like, for the error naming a bad one
    correct: Callable[[str | None, str], bool] | None = None  # None: equal after ``normalize``


def _number() -> AnswerType:
    def extract(text: str) -> str | None:
        return _rule_task("gsm8k").extract_answer(text)

    return AnswerType(REGISTRY["gsm8k"].extraction_rule, extract, lambda v: extract(str(v)),
                      "a number (e.g. 18, '$1,000', '... #### 18')",
                      lambda p, g: _rule_task("gsm8k").is_correct(p, g))


def _yes_no() -> AnswerType:
    def extract(text: str) -> str | None:
        return _rule_task("coin_flip").extract_answer(text)

    def gold(value: Any) -> str | None:
        if isinstance(value, bool) or str(value).strip().lower() in ("true", "false"):
            return "yes" if str(value).strip().lower() == "true" else "no"
        return extract(str(value))

    return AnswerType(REGISTRY["coin_flip"].extraction_rule, extract, gold, "yes/no or true/false")


def _exact() -> AnswerType:
    def extract(text: str) -> str | None:
        span = after_last_marker(text)
        return " ".join((span if span is not None else text).split()) or None

    return AnswerType("the text after the last answer marker ('The answer is', 'Final answer:', ...), else the whole "
                      "response, whitespace collapsed; equal to the gold answer after casefolding and stripping "
                      "punctuation", extract, lambda v: str(v).strip() or None, "a non-empty text")


def _regex(pattern: str | None) -> AnswerType:
    if not pattern:
        raise UserError("task.options.answer_type regex needs task.options.pattern: a regular expression with one "
                        "group, e.g. 'Answer: (\\w+)'")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise UserError(f"task.options.pattern {pattern!r} is not a valid regular expression: {e}") from None
    if compiled.groups != 1:
        raise UserError(f"task.options.pattern {pattern!r} has {compiled.groups} groups: it needs exactly one, around "
                        "the answer (use (?:...) for the others)")

    def extract(text: str) -> str | None:
        hits = list(compiled.finditer(text))
        # The last match: System 2 outputs restate the format ("Answer: X") before answering.
        return (hits[-1].group(1) or "").strip() or None if hits else None

    return AnswerType(f"the group of the last match of /{pattern}/, stripped; equal to the gold answer after "
                      "casefolding and stripping punctuation", extract, lambda v: str(v).strip() or None,
                      "a non-empty text")


def _choice(labels: list[str], letters: bool) -> AnswerType:
    """Answers from ``labels``: a letter per option of each row (``letters``) or a fixed list of texts.

    A single-letter label is matched in capitals only, so the article "a" is never an answer; with
    no answer marker it must also look like a choice, so "A coin is heads up" is not read as "A".
    """
    canon = {normalize(x): x for x in labels}
    singles = "|".join(re.escape(x) for x in labels if len(x) == 1) or "(?!)"
    longs = "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True) if len(x) > 1) or "(?!)"
    # After an answer marker: the first label written ("The answer is B", "Final answer: positive").
    loose = re.compile(rf"(?<!\w)({singles}|(?i:{longs}))(?!\w)")
    strict = re.compile("|".join([
        rf"\(({singles})\)",  # (B)
        rf"(?<!\w)({singles})(?=[).:])",  # B)  B.  B:
        rf"^\W*({singles})\W*$",  # B alone on a line, **B** included
        rf"(?i:option|choice|answer)\s+\(?({singles})\b",  # option B
        rf"(?<!\w)((?i:{longs}))(?!\w)",  # a longer answer, any case
    ]), re.M)

    def extract(text: str) -> str | None:
        span = after_last_marker(text)
        if span is not None and (m := loose.search(span)):
            return canon[normalize(m.group(1))]
        hits = list(strict.finditer(text))  # no marker: the last choice written
        return canon[normalize(next(g for g in hits[-1].groups() if g))] if hits else None

    def gold(value: Any) -> str | None:
        if letters and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
            return labels[value]  # a 0-based index into the row's options
        return canon.get(normalize(str(value)))

    what = f"a letter {labels[0]}–{labels[-1]}" if letters else f"one of {', '.join(labels)}"
    rule = (f"{what}: the first one after the last answer marker, else the last one written (a single letter only as "
            "'(B)', 'B)', 'B.', 'B:', 'option B' or alone on a line; longer answers case-insensitive, whole words)")
    return AnswerType(rule, extract, gold, what + (" or a 0-based option index" if letters else ""))


def _judge_pair() -> AnswerType:
    def gold(value: Any) -> str | None:
        v = str(value).strip().upper()
        return {"A": "A", "1": "A", "B": "B", "2": "B"}.get(v)

    return AnswerType(REGISTRY["pairwise_judge"].extraction_rule, parse_verdict, gold,
                      "A or 1 (the first response is better), B or 2 (the second)")


def check_data_path(path: str) -> None:
    """A path that is a local folder, or a file of a format the dataset task does not read, is one line
    naming what it reads, before ``datasets`` would try it as a Hub id (retrying over the network)."""
    local, suffix = Path(path).expanduser(), Path(path).suffix.lower()
    if local.is_dir() and not any(f.suffix.lower() in FILE_BUILDERS for f in local.rglob("*") if f.is_file()):
        raise UserError(f"data path {path} is a folder without JSONL, CSV or Parquet files: point task.options.path at "
                        f"one file, or a folder of such files (e.g. train.jsonl and test.jsonl); it reads {READS}")
    if suffix not in FILE_BUILDERS and (local.is_file() or suffix in OTHER_FILES):
        what = f"{suffix} files are" if suffix else "files without a suffix are"
        raise UserError(f"cannot read {path}: {what} not read; the dataset task reads {READS} — save the rows as "
                        "JSONL or CSV (one row per item)")


def read_rows(path: str, config: str | None, split: str) -> list[dict]:
    """Every row of a local JSONL/CSV/Parquet file, or of one split of a Hugging Face dataset."""
    import datasets

    check_data_path(path)
    builder = FILE_BUILDERS.get(Path(path).suffix.lower())
    if builder:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"data file {path} not found: fix task.options.path ({READS})")
        if file.stat().st_size == 0:
            raise UserError(f"data file {path} is empty: it needs one row per item")
        if builder == "json" and file.suffix.lower() == ".jsonl":  # names a bad line by its number, and the fix
            rows = list(iter_jsonl(file))
            if not rows:
                raise UserError(f"{path} has no rows: it needs one row per item")
            return rows
    was_on, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()  # one bar per file is noise in the run log
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its parse errors are logged too: ours is the one line
    try:
        if builder:
            ds = datasets.load_dataset(builder, data_files=str(file), split="train")
        else:
            ds = datasets.load_dataset(path, config, split=split)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as e:
        if builder and "corresponds to no data" in str(e):
            raise UserError(f"data file {path} has no rows: it needs one row per item") from None
        # A generation error's own message is generic ("An error occurred..."); its cause says what.
        cause = e.__cause__ if isinstance(e, datasets.exceptions.DatasetGenerationError) and e.__cause__ else e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if builder:
            raise UserError(f"could not read {path} as {builder.upper()}: {first}") from None
        if Path(path).expanduser().is_dir():
            raise UserError(f"could not read the data files of folder {path} (split {split!r}): {first}") from None
        raise UserError(f"could not load Hugging Face dataset {path!r} (config {config!r}, split {split!r}): {first} — "
                        "run once with network access (it is cached after), or save it as a JSONL/CSV/Parquet file and "
                        "set task.options.path to that file") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if was_on:
            datasets.enable_progress_bars()
    rows = ds.to_list()
    if not rows:
        raise UserError(f"{path} has no rows: it needs one row per item")
    return rows


@register_task("dataset")
class DatasetTask(Task):
    """Rows of a file or Hugging Face dataset, asked through a question template, scored by an answer type."""

    extraction_rule = "the rule of task.options.answer_type"  # each instance states its own
    sources: ClassVar[tuple[str, ...]] = ("synthetic",)  # task.source values accepted (the config's default)

    def __init__(self, train_size: int = 200, test_size: int = 200, seed: int = 0, source: str = "synthetic", *,
                 path: str | None = None, question: str = "{question}", answer: str | None = None,
                 answer_type: str = "exact", config: str | None = None, split: str = "train",
                 test_path: str | None = None, test_split: str | None = None, test_ratio: float | None = None,
                 choices: list[str] | str | None = None, pattern: str | None = None,
                 responses: list[str] | None = None, group: str | None = None):
        super().__init__(train_size, test_size, seed, source)
        if source not in self.sources:
            raise UserError(f"task.source {source!r} does not apply to the {self.name} task: it reads task.options.path; "
                            "leave task.source unset")
        if not path:
            raise UserError("the dataset task needs task.options.path: a JSONL, CSV or Parquet file, or a Hugging Face "
                            "dataset id (with task.options.config and split)")
        check_choice(answer_type, ANSWER_TYPES, "task.options.answer_type")
        if test_ratio is not None and (test_path or test_split):
            raise UserError("set one of task.options.test_path / test_split (separate test rows) or test_ratio (a "
                            "seeded share of the rows), not both")
        if test_ratio is not None and not 0 < test_ratio < 1:
            raise UserError(f"task.options.test_ratio must be between 0 and 1, got {test_ratio}")
        if answer_type == "judge_pair" and (not isinstance(responses, list) or len(responses) != 2):
            raise UserError("answer_type judge_pair needs task.options.responses: the two fields holding the responses "
                            "to compare, e.g. [response_a, response_b]")
        if answer_type == "choice" and not choices:
            raise UserError("answer_type choice needs task.options.choices: a list of answers (e.g. [yes, no, maybe]) "
                            "or the name of the field holding each row's options (answered by letter)")
        self.path, self.config, self.split, self.question, self.answer = path, config, split, question, answer
        self.test_path, self.test_split = test_path, test_split
        self.test_ratio = 0.2 if test_ratio is None and not (test_path or test_split) else test_ratio
        self.answer_type, self.choices, self.responses, self.group = answer_type, choices, responses, group
        self.options_field = choices if answer_type == "choice" and isinstance(choices, str) else None
        self.answers = self._answer_type(pattern)
        self.extraction_rule = self.answers.rule
        self._rows: dict[str, list[tuple[int, dict]]] = {}
        self._row_maps: dict[str, dict[int, dict]] = {}

    def _answer_type(self, pattern: str | None, num_options: int = len(LETTERS)) -> AnswerType:
        if self.answer_type == "regex":
            return _regex(pattern)
        if self.answer_type == "choice" and self.options_field:  # each row's options, answered by letter
            return _choice(list(LETTERS[:num_options]), letters=True)
        if self.answer_type == "choice":
            return _choice([str(c) for c in self.choices], letters=False)
        return {"number": _number, "yes_no": _yes_no, "exact": _exact, "judge_pair": _judge_pair}[self.answer_type]()

    @property
    def source_label(self) -> str:
        """``Example.metadata["source"]``: where the items came from."""
        return self.path if Path(self.path).suffix.lower() in FILE_BUILDERS else f"{self.path}:{self.split}"

    # -- rows ------------------------------------------------------------------------------
    def rows(self, split: str) -> list[tuple[int, dict]]:
        """(row number, row) of the split's pool, before sampling: train shuffled, test in file order."""
        check_choice(split, SPLITS, "split")
        if split not in self._rows:
            if self.test_ratio is None:
                same = (self.test_path or self.path) == self.path and (self.test_split or self.split) == self.split
                if same:
                    raise UserError(f"the test rows would be the train rows ({self.source_label}): set task.options."
                                    "test_path or test_split to other rows, or test_ratio")
                pools = {"train": list(enumerate(read_rows(self.path, self.config, self.split))),
                         "test": list(enumerate(read_rows(self.test_path or self.path, self.config,
                                                          self.test_split or self.split)))}
            else:
                rows = list(enumerate(read_rows(self.path, self.config, self.split)))
                order = rows[:]
                random.Random(f"{self.name}-{self.seed}-split").shuffle(order)
                k = max(1, round(self.test_ratio * len(rows)))
                held_out = {i for i, _ in order[:k]}
                pools = {"test": [r for r in rows if r[0] in held_out], "train": [r for r in rows if r[0] not in held_out]}
            # A seeded sample of train inputs (files often group similar items); test stays in file order.
            random.Random(f"{self.name}-{self.seed}-train").shuffle(pools["train"])
            self._rows = pools
            if self.options_field:  # letters up to the most options a row has: a stray "I" is no answer to four
                most = max((len(r[self.options_field]) for pool in pools.values() for _, r in pool
                            if isinstance(r.get(self.options_field), list)), default=2)
                self.answers = self._answer_type(None, min(max(most, 2), len(LETTERS)))
                self.extraction_rule = self.answers.rule
        return self._rows[split]

    def check_data(self) -> None:
        for split in SPLITS:
            self.load(split)

    def load(self, split: str) -> list[Example]:
        pool = self.rows(split)
        size = self.train_size if split == "train" else self.test_size
        if size > len(pool):
            raise UserError(f"task.{split}_size is {size} but {self._where(split)} has {len(pool)} {split} rows: set "
                            f"task.{split}_size to at most {len(pool)}")
        return [ex for line, row in pool[:size] for ex in self._examples(split, line, row)]

    def _where(self, split: str) -> str:
        if split == "test" and self.test_ratio is None:
            return self.test_path or f"{self.path}:{self.test_split}"
        return self.source_label

    def _examples(self, split: str, line: int, row: dict) -> list[Example]:
        where = f"{self._where(split)} row {line + 1}"
        question = self.render_question(row, where)
        gold = self._gold(split, row, where)
        meta: dict[str, Any] = {"source": self.source_label, "row": line + 1}  # 1-based, as errors name rows
        if self.group:
            meta["group"] = str(self._field(row, self.group, where, "task.options.group"))
        if self.answer_type != "judge_pair":
            return [Example(id=f"{self.name}-{split}-{line:04d}", question=question, answer=gold, metadata=meta)]
        a, b = (str(self._field(row, f, where, "task.options.responses")) for f in self.responses)
        return both_orders(f"{self.name}-{split}-{line:04d}", question, a, b,
                           None if gold is None else 1 if gold == "A" else 2, meta)

    def render_question(self, row: dict, where: str) -> str:
        """A row's question: the template filled in from its fields (a choice list lettered as ``{options}``);
        also for rows of a file the run never saw (``sys2distill answer``)."""
        fields = dict(row)
        if self.options_field:
            opts = row.get(self.options_field)
            if not isinstance(opts, list) or not 2 <= len(opts) <= len(LETTERS):
                raise UserError(f"{where}: field {self.options_field!r} (task.options.choices) must be a list of 2 to 26 "
                                f"options, got {opts!r}")
            fields["options"] = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
        return self._render(fields, where)

    def _render(self, fields: dict, where: str) -> str:
        try:
            names = {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(self.question) if f}
        except ValueError as e:
            raise UserError(f"task.options.question {self.question!r} is not a valid template: {e} (write {{{{ and }}}} "
                            "for literal braces)") from None
        for name in sorted(names):
            self._field(fields, name, where, "task.options.question")
        try:
            return self.question.format(**fields)
        except (KeyError, IndexError, AttributeError, ValueError) as e:
            raise UserError(f"{where}: task.options.question {self.question!r} cannot be filled in: {e!r}") from None

    def _field(self, row: dict, name: str, where: str, option: str) -> Any:
        if name not in row:
            known = ", ".join(sorted(row))
            raise UserError(f"{option} names field {name!r}, which {where} does not have: its fields are {known}")
        if row[name] is None:
            raise UserError(f"{where} has no value for {name!r} ({option}): fill it in or drop the row")
        return row[name]

    def _gold(self, split: str, row: dict, where: str) -> str | None:
        if split == "train" and not self.labeled(split):
            return None  # train inputs stay unlabeled: distillation learns from the model's own votes only
        if self.answer is None:
            if split == "train":
                return None
            raise UserError("the test items need gold answers: set task.options.answer to the field holding them")
        if split == "train" and row.get(self.answer) is None:
            return None  # train rows may come without answers
        value = self._field(row, self.answer, where, "task.options.answer")
        gold = self.answers.gold(value)
        if gold is None:
            raise UserError(f"{where}: gold answer {_short(value)} is not {self.answers.expects} (answer_type "
                            f"{self.answer_type}): fix task.options.answer / answer_type, or the row")
        return gold

    # -- answers ---------------------------------------------------------------------------
    def extract_answer(self, text: str) -> str | None:
        return self.answers.extract(text)

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        if self.answers.correct is not None:
            return self.answers.correct(predicted, gold)
        return super().is_correct(predicted, gold)

    def format_answer(self, answer: str) -> str:
        return f"[[{answer.upper()}]]" if self.answer_type == "judge_pair" else answer

    def inconsistent(self, examples: list[Example], answers: dict[str, str | None]) -> dict[str, bool] | None:
        return inconsistent_pairs(examples, answers) if self.answer_type == "judge_pair" else None

    @property
    def prompt_field_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The row's fields (but the gold answer's) and, for response pairs, the responses in the order shown."""
        pairs = ("response_a", "response_b") if self.answer_type == "judge_pair" else ()
        first = self.rows("train")[:1] or self.rows("test")[:1]
        own = [k for k in (first[0][1] if first else {}) if k != self.answer and k not in pairs and k != "question"]
        return (*pairs, *own)

    def prompt_fields(self, example: Example) -> dict[str, object]:
        """What a prompt may use besides ``{question}``: the item's row fields, except the gold answer's (a step
        reading it would hand the label to the model), and a pair's responses in the order shown."""
        split = next((sp for sp in SPLITS if example.id.startswith(f"{self.name}-{sp}-")), None)
        md = example.metadata
        index = md["row"] - 1 if "row" in md else md.get("line")  # "line" (0-based): run folders before "row"
        row = self._row_map(split).get(index, {}) if split else {}
        fields = {k: v for k, v in row.items() if k != self.answer and k != "question"}
        if self.answer_type == "judge_pair":
            fields.update(response_a=example.metadata["response_a"], response_b=example.metadata["response_b"])
        return fields

    def _row_map(self, split: str) -> dict[int, dict]:
        """The split's rows by 0-based row number, built once (a prompt per item looks its row up)."""
        if split not in self._row_maps:
            self._row_maps[split] = dict(self.rows(split))
        return self._row_maps[split]

    @property
    def prompt_variant(self) -> str:
        # Response pairs take the judge prompts of system1, cot and bsm (Figs. 7–9, 13).
        return "pairwise_judge" if self.answer_type == "judge_pair" else self.name


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


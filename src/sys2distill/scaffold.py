"""``sys2distill init``: a commented run config for the user's own data and System 2 method.

The config is checked the way ``run`` checks it (data read, template filled in, gold answers
parsed, chain placeholders resolved) before this returns, so a written config is one that runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sys2distill.config import FilterConfig, GenerationConfig, load_config, read_chain
from sys2distill.errors import UserError
from sys2distill.methods import REGISTRY as METHODS
from sys2distill.tasks.dataset import FILE_BUILDERS, DatasetTask

DEFAULT_SIZE = 200  # the config's default split sizes; smaller data uses all its rows
MAX_TOKENS = 256  # per step: room for a worked solution on the user's own data (the config's default is 128)


def _y(value) -> str:
    """A YAML scalar or flow list (JSON is YAML), quoted so templates' braces and colons survive."""
    return json.dumps(value, ensure_ascii=False)


def run_name(data: str, method: str, name: str | None = None) -> str:
    """The run's name: ``name``, else ``<data file stem>_<method>`` (a run folder name: no path characters)."""
    if name is not None:
        if not name or "/" in name or name.startswith("."):
            raise UserError(f"--name {name!r} is not a run name: use letters, digits, '-' and '_' (it names runs/<name>)")
        return name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{Path(data).stem}_{Path(method).stem}")


def write_config(out: Path, data: str, question: str, answer: str | None, answer_type: str | None,
                 method: str, data_config: str | None, test: str | None, test_ratio: float | None, choices: str | None,
                 pattern: str | None, responses: str | None, model: str, force: bool, name: str | None = None) -> str:
    """Write the config to ``out``; returns a one-paragraph summary for the terminal."""
    name = run_name(data, method, name)
    if out.exists() and not force:
        raise UserError(f"{out} exists: pass --name (or --out) to make a config of another name, or --force to "
                        "overwrite it")
    if answer is None or answer_type is None:
        # Train rows need no answer, but the test rows' gold answers score every system, and the
        # answer type's rule is also what the filter votes on.
        raise UserError("pass --answer FIELD (the test rows' gold answers; train rows need none) and --answer-type "
                        "(number, choice, yes_no, exact, regex or judge_pair)")
    base = out.resolve().parent
    options, as_given = _task_options(data, question, answer, answer_type, data_config, test, test_ratio, choices,
                                      pattern, responses, base)
    # The task built from the options (paths as the user gave them): the splits sized to the data,
    # then every selected row read, templated and its gold answer parsed.
    rows = DatasetTask(**as_given)
    sizes = {split: min(DEFAULT_SIZE, len(rows.rows(split))) for split in ("train", "test")}
    DatasetTask(sizes["train"], sizes["test"], **as_given).check_data()
    method, chain_line = _method(method, base)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(out, data, name, model, sizes, options, method, chain_line))
    try:  # the same checks `run` makes before it loads a model
        from sys2distill.pipeline import Pipeline

        Pipeline(load_config(out))
    except UserError:
        out.unlink()
        raise
    return (f"wrote {out}: {sizes['train']} train inputs, {sizes['test']} test items, answer type {answer_type}, "
            f"method {method}.\n"
            f"Next: sys2distill show-prompt {out}   then   sys2distill run {out}")


def _task_options(data: str, question: str, answer: str, answer_type: str, data_config: str | None, test: str | None,
                  test_ratio: float | None, choices: str | None, pattern: str | None, responses: str | None,
                  base: Path) -> tuple[dict, dict]:
    """The dataset task's options as written (paths relative to the config's folder) and as given."""
    local = Path(data).suffix.lower() in FILE_BUILDERS  # a file; else a Hub id or a dataset folder, with splits
    options: dict = {"path": _relative(data, base) if Path(data).exists() else data, "question": question,
                     "answer": answer, "answer_type": answer_type}
    if data_config is not None:
        options["config"] = data_config
    if test and local:
        options["test_path"] = _relative(test, base)
    elif test:
        options["test_split"] = test  # a Hub dataset or folder: --test names its test split
    else:
        options["test_ratio"] = test_ratio or 0.2
    if choices is not None:  # "a,b,c" is a list of answers; one name is the field holding each row's options
        options["choices"] = [c.strip() for c in choices.split(",")] if "," in choices else choices
    if pattern is not None:
        options["pattern"] = pattern
    if responses is not None:
        options["responses"] = [r.strip() for r in responses.split(",")]
    return options, {**options, "path": data, **({"test_path": test} if test and local else {})}


def _method(method: str, base: Path) -> tuple[str, str]:
    """The method's name in the config, and the ``chains:`` lines a chain file needs."""
    if method.endswith((".yaml", ".yml")):
        read_chain(method)  # a missing or malformed file fails here, before anything is written
        name = Path(method).stem
        return name, (f"chains:  # System 2 methods written as prompt steps (methods/chain.py)\n"
                      f"  {name}: {_y(_relative(method, base))}  # relative to this file\n")
    if method not in METHODS:
        raise UserError(f"--method {method!r} is neither a built-in method ({', '.join(sorted(METHODS))}) nor a chain "
                        "file (.yaml)")
    return method, ""


def render(out: Path, data: str, name: str, model: str, sizes: dict, options: dict, method: str, chain_line: str) -> str:
    """The commented config; every value that is a config default is read from ``config.py``, not repeated."""
    g, f = GenerationConfig(), FilterConfig()
    # CoT's final response is its reasoning: distilling it would teach System 1 to reason out loud
    # (paper Sec. 4.4 trains on the voted answer alone).
    target = "answer_only" if method in ("cot", "cot_fewshot") else "final_response"
    option_lines = "\n".join(f"    {k}: {_y(v)}{_OPTION_NOTES.get(k, '')}" for k, v in options.items())
    return f"""\
# Distil {method} into System 1 answers on {data} (written by `sys2distill init`).
#   sys2distill show-prompt {out.name}   # the exact text each step sends, for one real item
#   sys2distill run {out.name}           # generate, filter, train, evaluate, report
#   sys2distill config {out.name}        # every key, defaults filled in
name: {_y(name)}  # the run folder is runs/<name>
model: {_y(model)}  # 'embedded' (SmolLM2-135M-Instruct), a local checkpoint folder, or a Hub id
task:
  name: dataset
  train_size: {sizes['train']}  # unlabeled inputs to distil on (at most the train rows)
  test_size: {sizes['test']}  # held-out items scored in the report (at most the test rows)
  options:
{option_lines}
{chain_line}generation:
  num_samples: {g.num_samples}  # System 2 samples per input, voted on by the filter (paper: 8)
  max_tokens: {MAX_TOKENS}  # per step
filter:
  name: {f.name}
  min_agreement: {f.min_agreement}  # keep an input when at least half its samples give the winning answer
distill:
  methods: [system1, {method}]  # one distilled model each; system1 = the "Distill System 1" baseline
  target: {target}  # final_response: the winning sample's last output; answer_only: the extracted answer alone
evaluate:
  systems: [system1, {method}]  # scored on the test items, beside the distilled models
  max_tokens: {MAX_TOKENS}
"""


_OPTION_NOTES = {
    "path": "  # a JSONL/CSV/Parquet file (relative to this file) or a Hugging Face dataset id",
    "question": "  # what the model is asked: a template over the row's fields",
    "answer": "  # the gold field; only test rows need it",
    "answer_type": "  # number | choice | yes_no | exact | regex | judge_pair: picks the extraction rule",
    "config": "  # the Hugging Face dataset's config name",
    "test_path": "  # the test rows",
    "test_split": "  # the test split",
    "test_ratio": "  # this share of the rows is held out for testing (seeded by task.seed)",
    "choices": "  # the answers, or the field holding each row's options (then {options} lists them, answered by letter)",
    "pattern": "  # a regular expression; its one group is the answer",
    "responses": "  # the two fields holding the responses to compare",
}


def _relative(path: str, base: Path) -> str:
    """``path`` as seen from the config's folder, which is where `run` looks for it."""
    return os.path.relpath(Path(path).resolve(), base)

"""The ``sys2distill`` command line (also ``python -m sys2distill``)."""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sys2distill.errors import UserError

# "\b" before a paragraph stops click from reflowing it into one line.
HELP = """Distil a System 2 prompting method into System 1 answers of the same model
(Yu et al. 2024, "Distilling System 2 into System 1", arXiv 2407.06023).

\b
Stages, each writing into the run folder (runs/<name>/) and skipped when done:
  generate  sample N System 2 traces per unlabeled train input
  filter    keep inputs whose answers are self-consistent; write the SFT dataset
  train     fine-tune the same model on input -> final answer (no reasoning tokens)
  evaluate  System 1, System 2 and distilled models on the held-out test split
  report    accuracy and mean generated tokens per answer -> results.json / results.md

\b
Start with:
  sys2distill run configs/rar_last_letter.yaml    one experiment, every stage
  sys2distill reproduce --scale small             all of the paper's experiments, one report
  sys2distill push runs/<name> --repo ORG/NAME    share a distilled model on the Hugging Face Hub
  sys2distill answer runs/<name> --input FILE     answer new inputs with the distilled model

\b
Config values can be overridden after the config file: key=value, e.g.
  sys2distill run configs/rar_last_letter.yaml generation.num_samples=4 task.test_size=50
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)

ConfigArg = Annotated[str, typer.Argument(metavar="CONFIG", help="YAML config file (configs/*.yaml), a shipped config's "
                                                                  "name, or a run folder (runs/<name>: its config.yaml).")]
OptionalConfigArg = Annotated[Optional[str], typer.Argument(metavar="CONFIG",
                                                            help="YAML config file (default: every key at its default).")]
Overrides = Annotated[Optional[list[str]], typer.Argument(metavar="KEY=VALUE", help="Overrides, e.g. task.test_size=50.")]


def _user_errors(fn):
    """Print a UserError as one line on stderr and exit 2: no traceback for user mistakes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _pipeline(config: str, overrides: list[str] | None):
    """The run's pipeline; the config and its names are checked first, before the pipeline's imports (torch,
    transformers) take seconds."""
    from sys2distill.config import load_config
    from sys2distill.validation import check_names

    cfg = load_config(config, overrides or [])
    check_names(cfg)
    from sys2distill.pipeline import Pipeline

    return Pipeline(cfg)


@app.command()
@_user_errors
def run(config: ConfigArg, overrides: Overrides = None,
        force: Annotated[Optional[list[str]], typer.Option(help="Redo this stage (repeatable).")] = None,
        stages: Annotated[Optional[str], typer.Option(help="Comma-separated stages to run (default: all).")] = None):
    """Run every stage of the pipeline.

    Finished stages are skipped; --stages a,b runs only those, --force STAGE redoes one and what follows."""
    p = _pipeline(config, overrides)  # checks the config before the pipeline's heavy imports
    from sys2distill.pipeline import STAGES

    _show(p, p.run(tuple(stages.split(",")) if stages else STAGES, tuple(force or ())))


def _show(p, results) -> None:
    """The results table and verdict when the run has a report (also a finished run rerun), then the folder."""
    if results is not None:
        from sys2distill.report import print_table
        from sys2distill.rundir import RESULTS_MD

        print_table(results)
        typer.echo(f"report: {p.dir / RESULTS_MD}")
    typer.echo(f"run folder: {p.dir}")


def _next_step(stage: str, config: str, overrides: list[str] | None, run_dir) -> str:
    """The command a user runs after ``stage``, with the same config and overrides."""
    from sys2distill.pipeline import STAGES

    if stage == STAGES[-1]:
        return f"next: share a distilled model with `sys2distill push {shlex.quote(str(run_dir))} --repo ORG/NAME`"
    return f"next: {shlex.join(['sys2distill', STAGES[STAGES.index(stage) + 1], config, *(overrides or [])])}"


def _stage_command(stage: str, doc: str):
    @_user_errors
    def command(config: ConfigArg, overrides: Overrides = None,
                force: Annotated[bool, typer.Option(help="Delete this stage's outputs and redo it.")] = False):
        p = _pipeline(config, overrides)
        results = p.run((stage,), (stage,) if force else ())
        _show(p, results if stage == "report" else None)
        typer.echo(_next_step(stage, config, overrides, p.dir))

    command.__doc__ = doc
    app.command(stage)(command)


for _stage, _doc in [("generate", "Sample N System 2 traces per unlabeled train input."),
                     ("filter", "Keep self-consistent inputs; write the SFT dataset."),
                     ("train", "Fine-tune the model on each distillation dataset."),
                     ("evaluate", "Score System 1, System 2 and distilled models."),
                     ("report", "Write results.json and results.md and print the table.")]:
    _stage_command(_stage, _doc)


@app.command()
@_user_errors
def reproduce(overrides: Overrides = None,
              scale: Annotated[str, typer.Option(help="small (embedded model, 2 CPU cores, ~45 min), medium (the shipped "
                                                      "configs) or paper (the paper's sizes: GPUs or servers).")] = "small",
              model: Annotated[str, typer.Option(help="'embedded', an HF model id or a local path; for a server, "
                                                      "pass backend.name=openai backend.base_url=... as overrides.")] = "embedded",
              out: Annotated[Optional[str], typer.Option(help="Output folder (default runs/reproduce-<scale>).")] = None,
              only: Annotated[Optional[str], typer.Option(help="Comma-separated experiments (default: all).")] = None):
    """Run all of the paper's experiments.

    RaR ×2, S2A, BSM and CoT, each an ordinary run; report.md + report.html beside the paper's numbers."""
    from sys2distill.reproduce import reproduce as run_all

    folder = run_all(scale, model, out, only.split(",") if only else None, overrides or [])
    typer.echo(f"report: {folder / 'report.md'} and {folder / 'report.html'}")


@app.command("show-prompt")
@_user_errors
def show_prompt(args: Annotated[list[str], typer.Argument(help="CONFIG [key=value ...], or METHOD TASK (a built-in "
                                                               "method on a built-in task's defaults).")],
                method: Annotated[Optional[list[str]], typer.Option(help="Only this method or chain (repeatable); "
                                                                          "default: every one the config names.")] = None,
                split: Annotated[str, typer.Option(help="Which split's item to render: test or train.")] = "test",
                index: Annotated[int, typer.Option(help="Which item of that split to render.")] = 0):
    """Print the exact text each step of each method sends for one real item, chat template included."""
    from sys2distill import methods
    from sys2distill.config import load_config, shipped_configs
    from sys2distill.pipeline import Pipeline
    from sys2distill.preview import load_tokenizer, preview_steps, render
    from sys2distill.registry import lookup

    first, rest = args[0], args[1:]
    if len(rest) == 1 and "=" not in rest[0] and not Path(first).is_file() and first not in shipped_configs():
        lookup(methods.REGISTRY, first, "method")  # the short form: METHOD TASK
        cfg = load_config(None, [f"task.name={rest[0]}", "distill.methods=[]", f"evaluate.systems=[{first}]"])
    else:
        cfg = load_config(first, rest)
    p = Pipeline(cfg)
    names = list(dict.fromkeys(method or [*cfg.evaluate.systems, *(s.method for s in cfg.distill.specs)]))
    for name in names:
        lookup({**methods.REGISTRY, **cfg.chains}, name, "method or chain")
    items = p.task.load(split)
    if not 0 <= index < len(items):
        raise UserError(f"--index {index} is out of range: the {split} split has {len(items)} items")
    example, tokenizer = items[index], load_tokenizer(cfg.model)
    typer.echo(f"item {example.id} ({split} split); chat template of model {cfg.model!r}; each step below is the "
               "whole text the model reads")
    for name in names:
        m = p.method(name)
        steps = preview_steps(m, example)
        typer.echo(f"\n=== {name} ({m.label}): {len(steps)} step{'s' * (len(steps) != 1)} ===")
        for k, step in enumerate(steps, 1):
            needs = f" (holds the output of step {', '.join(step.needs)}, written at run time)" if step.needs else ""
            typer.echo(f"--- step {k}/{len(steps)}: {step.name}{needs} ---")
            typer.echo(render(tokenizer, step.messages))


@app.command()
@_user_errors
def init(data: Annotated[str, typer.Option(help="Your rows: a JSONL, CSV or Parquet file, or a Hugging Face dataset id.")],
         question: Annotated[str, typer.Option(help="What the model is asked, a template over a row's fields, "
                                                    "e.g. '{question}' or 'Review: {text} Positive or negative?'.")],
         answer: Annotated[Optional[str], typer.Option(help="The field holding gold answers (test rows only).")] = None,
         answer_type: Annotated[Optional[str], typer.Option(help="number, choice, yes_no, exact, regex or judge_pair.")] = None,
         method: Annotated[str, typer.Option(help="A built-in System 2 method (rar_2step, cot, ...) or a chain "
                                                  "YAML file of prompt steps.")] = "rar_2step",
         data_config: Annotated[Optional[str], typer.Option(help="A Hugging Face dataset's config name, e.g. main.")] = None,
         test: Annotated[Optional[str], typer.Option(help="Test rows: a second file (or, for a Hub dataset, a split "
                                                          "name). Default: a seeded --test-ratio of the rows.")] = None,
         test_ratio: Annotated[Optional[float], typer.Option(help="Share of the rows held out for testing (0.2).")] = None,
         choices: Annotated[Optional[str], typer.Option(help="choice: 'a,b,c', or the field holding each row's options.")] = None,
         pattern: Annotated[Optional[str], typer.Option(help="regex: a pattern whose one group is the answer.")] = None,
         responses: Annotated[Optional[str], typer.Option(help="judge_pair: the two response fields, 'a,b'.")] = None,
         model: Annotated[str, typer.Option(help="'embedded', a local checkpoint folder or a Hub id.")] = "embedded",
         name: Annotated[Optional[str], typer.Option(help="The run's name, its folder runs/<name> (default "
                                                          "<data>_<method>).")] = None,
         out: Annotated[Optional[str], typer.Option(help="Config file to write (default <name>.yaml).")] = None,
         force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False):
    """Write a commented config that distils a System 2 method on your own data (checked before it is written)."""
    from sys2distill.scaffold import run_name, write_config

    name = run_name(data, method, name)
    typer.echo(write_config(Path(out or f"{name}.yaml"), data, question, answer, answer_type, method, data_config, test,
                            test_ratio, choices, pattern, responses, model, force, name=name))


@app.command("list")
def list_components():
    """List registered tasks, methods, filters and backends."""
    from sys2distill import backends, filters, methods, tasks

    from sys2distill.config import CONFIG_DIR

    for kind, reg in [("tasks", tasks.REGISTRY), ("methods", methods.REGISTRY), ("filters", filters.REGISTRY),
                      ("backends", backends.REGISTRY)]:
        typer.echo(f"{kind}: {', '.join(sorted(reg))}")
    typer.echo(f"shipped chains (chains: {{name: FILE}}): {', '.join(sorted(f.stem for f in (CONFIG_DIR / 'chains').glob('*.yaml')))}")


@app.command("config")
@_user_errors
def show_config(config: OptionalConfigArg = None, overrides: Overrides = None):
    """Print the resolved config.

    Every key, defaults filled in, overrides applied."""
    from sys2distill.config import dump_config, load_config

    typer.echo(dump_config(load_config(config, overrides or [])), nl=False)


@app.command()
@_user_errors
def push(run_dir: Annotated[str, typer.Argument(metavar="RUN", help="A run folder (runs/<name>) or the config it ran with.")],
         repo: Annotated[str, typer.Option(help="Hub repo id ORG/NAME: the model goes to this model repo, "
                                                "its training data to the dataset repo of the same name.")],
         entry: Annotated[Optional[str], typer.Option(help="Which distilled model (a distill entry's name); "
                                                           "needed when the run has several.")] = None,
         private: Annotated[bool, typer.Option(help="Create the repos as private.")] = False):
    """Upload a distilled model to the Hub.

    The checkpoint with its model card goes to model repo ORG/NAME, its training data with a dataset card
    to dataset repo ORG/NAME. Needs a token with write access (`hf auth login` or HF_TOKEN)."""
    from sys2distill.hub import push as push_to_hub

    for url in push_to_hub(run_dir, repo, entry, private):
        typer.echo(f"pushed: {url}")


@app.command()
@_user_errors
def answer(run_dir: Annotated[str, typer.Argument(metavar="RUN", help="A run folder (runs/<name>) or the config it ran with.")],
           input: Annotated[str, typer.Option("--input", help="A JSONL, CSV or Parquet file of rows in the run's task "
                                                               "format (built-in tasks: a 'question' field).")],
           system: Annotated[Optional[str], typer.Option(help="distilled:ENTRY (a trained distill entry), a method "
                                                              "of the run (system1, cot_fewshot, ...) or route (the "
                                                              "run's router); default: the first distilled System 2 "
                                                              "model.")] = None,
           output: Annotated[Optional[str], typer.Option(help="Folder for the answers (default: RUN/answers).")] = None,
           overrides: Overrides = None):
    """Answer new inputs with a distilled model (or a method of the run), greedy, with a confidence.

    Writes one row per input (answer, whole output, generated tokens, confidence = the probability the model
    gives its output) to answers/<input>.<system>.jsonl; a killed call resumes where it stopped."""
    p = _pipeline(run_dir, overrides)
    from sys2distill.answering import answer_file
    from sys2distill.records import iter_jsonl

    out = answer_file(p, input, system, output)
    rows = list(iter_jsonl(out))
    answered = sum(r["answer"] is not None for r in rows)
    tokens = sum(r["tokens"] for r in rows) / max(len(rows), 1)
    typer.echo(f"{len(rows)} inputs, {answered} answered, {tokens:.1f} generated tokens per answer")
    typer.echo(f"answers: {out}")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

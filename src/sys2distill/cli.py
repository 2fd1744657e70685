"""The ``sys2distill`` command line (also ``python -m sys2distill``)."""

from __future__ import annotations

import functools
import shlex
import sys
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

\b
Config values can be overridden after the config file: key=value, e.g.
  sys2distill run configs/rar_last_letter.yaml generation.num_samples=4 task.test_size=50
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)

ConfigArg = Annotated[str, typer.Argument(metavar="CONFIG", help="YAML config file (configs/*.yaml) or a shipped config's name.")]
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
    from sys2distill.config import load_config
    from sys2distill.pipeline import Pipeline

    return Pipeline(load_config(config, overrides or []))


@app.command()
@_user_errors
def run(config: ConfigArg, overrides: Overrides = None,
        force: Annotated[Optional[list[str]], typer.Option(help="Redo this stage (repeatable).")] = None,
        stages: Annotated[Optional[str], typer.Option(help="Comma-separated stages to run (default: all).")] = None):
    """Run every stage of the pipeline.

    Finished stages are skipped; --stages a,b runs only those, --force STAGE redoes one and what follows."""
    from sys2distill.pipeline import STAGES

    p = _pipeline(config, overrides)
    p.run(tuple(stages.split(",")) if stages else STAGES, tuple(force or ()))
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
        p.run((stage,), (stage,) if force else ())
        typer.echo(f"run folder: {p.dir}")
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
def show_prompt(method: str, task: str, config: Annotated[Optional[str], typer.Option(help="Config with prompt overrides.")] = None,
                index: Annotated[int, typer.Option(help="Which test example to render.")] = 0):
    """Print the prompts a METHOD sends.

    For one TASK test example: each step's template, and the first step's prompt verbatim."""
    from sys2distill import methods
    from sys2distill.config import load_config
    from sys2distill.pipeline import Pipeline
    from sys2distill.registry import lookup

    lookup(methods.REGISTRY, method, "method")
    cfg = load_config(config, [f"task.name={task}", "task.test_size=" + str(index + 1), "evaluate.systems=[]",
                               "distill.methods=[]"])
    p = Pipeline(cfg)
    m = p.method(method)
    ex = p.task.load("test")[index]
    for key in sorted({k.split("@")[0] for k in m.PROMPTS}):
        typer.echo(f"--- {method}.{key} (template: {m.template(key)!r})")
        try:
            typer.echo(m.prompt(key, ex)[0]["content"])
        except UserError:  # a later step's prompt needs an earlier step's output
            typer.echo(m.template(key))


@app.command("list")
def list_components():
    """List registered tasks, methods, filters and backends."""
    from sys2distill import backends, filters, methods, tasks

    for kind, reg in [("tasks", tasks.REGISTRY), ("methods", methods.REGISTRY), ("filters", filters.REGISTRY),
                      ("backends", backends.REGISTRY)]:
        typer.echo(f"{kind}: {', '.join(sorted(reg))}")


@app.command("config")
@_user_errors
def show_config(config: OptionalConfigArg = None, overrides: Overrides = None):
    """Print the resolved config.

    Every key, defaults filled in, overrides applied."""
    from sys2distill.config import dump_config, load_config

    typer.echo(dump_config(load_config(config, overrides or [])), nl=False)


@app.command()
@_user_errors
def push(run_dir: Annotated[str, typer.Argument(metavar="RUN_DIR", help="A run folder, e.g. runs/rar_last_letter.")],
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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Answer new inputs with a finished run's systems (``sys2distill answer RUN --input FILE``).

The paper stops at the test split; a user's next step is to put the distilled model to work. A system is
``distilled:<entry>`` — the checkpoint of ``train/<entry>`` asked with the System 1 prompt, the answer
without reasoning tokens (arXiv 2407.06023 Sec. 2: System 1 after distillation) — or any method of the
run's config (``system1``, ``cot_fewshot``, a chain) on the run's base model, or ``route``: the run's router
(config ``route``), the distilled answer where it is sure, System 2's where not. Answers are greedy, as the
evaluate stage's are, and each carries a label-free confidence: the probability the model gives its own
final output (the product of its tokens' probabilities at temperature 1, from the backend's log-probs; for
a distilled answer-only model that output is the answer sentence, so it is the probability of the answer).

Inputs: a JSONL, CSV or Parquet file of rows in the run's task format — the ``dataset`` task's fields
(its question template is filled in from each row), or a ``question`` field for the built-in tasks. The
traces are appended and fsynced as they are made (``answers/<stem>.<system>.traces.jsonl``), so a killed
command resumes where it stopped; the answers file (``answers/<stem>.<system>.jsonl``) is written whole at
the end, one row per input, from those traces.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sys2distill import methods, rundir
from sys2distill.backends.base import SamplingParams
from sys2distill.errors import UserError
from sys2distill.records import Example, write_jsonl
from sys2distill.registry import check_registered

DISTILLED = "distilled:"
ROUTE = "route"  # the run's router (config ``route``)
ANSWERS = "answers"


@dataclass
class Answer:
    """One input's answer: what a user reads, and what it cost."""

    id: str
    row: int  # 1-based, as errors name rows
    question: str
    answer: str | None  # the task's extraction rule applied to the final output; None: no answer found
    output: str  # the final step's whole text
    tokens: int  # generated tokens, every step's
    confidence: float | None  # probability of the final output under the model; None: the backend gave no log-probs
    system: str
    routed: bool | None = None  # --system route: System 2 answered (the distilled model was unsure)


def read_inputs(task, path: str | Path) -> list[Example]:
    """The file's rows as examples of ``task``: the dataset task renders its question template, a built-in
    task reads each row's ``question``."""
    from sys2distill.tasks.dataset import DatasetTask, check_data_path, read_rows

    check_data_path(str(path))
    if not Path(path).expanduser().is_file():
        raise UserError(f"input file {path} not found: pass a JSONL, CSV or Parquet file of questions")
    rows = read_rows(str(path), None, "train")
    if isinstance(task, DatasetTask):
        if task.answer_type == "judge_pair":
            raise UserError("answer does not take response-pair (judge_pair) tasks: score pairs with the evaluate stage")
        questions = [task.render_question(row, f"{path} row {i}") for i, row in enumerate(rows, 1)]
        extra = [{} for _ in rows]
    else:
        missing = next((i for i, row in enumerate(rows, 1) if not isinstance(row.get("question"), str)), None)
        if missing is not None:
            raise UserError(f"{path} row {missing} has no 'question' text: task {task.name!r} reads each row's "
                            "'question' field")
        # A built-in task's prompts may read more than the question (last_letter: num_words): the row gives it.
        for i, row in enumerate(rows, 1):
            for name in task.prompt_field_names:
                if name not in row:
                    raise UserError(f"{path} row {i} has no {name!r}: task {task.name!r}'s prompts read it, so each "
                                    "row needs it beside 'question'")
        questions = [row["question"] for row in rows]
        extra = [{k: v for k, v in row.items() if k != "question"} for row in rows]
    return [Example(id=f"input-{i:05d}", question=q, answer=None, metadata={**more, "row": i})
            for i, (q, more) in enumerate(zip(questions, extra), 1)]


def answer_file(pipeline, input_path: str | Path, system: str | None = None, out_dir: str | Path | None = None) -> Path:
    """Answer every row of ``input_path`` with ``system`` (default: the run's first distilled model);
    returns the answers file. Resumes from the traces a killed call left."""
    from sys2distill.backends.build import build_backend
    from sys2distill.generation import run_method

    ctx = pipeline.ctx
    system = system or default_system(ctx)
    method, checkpoint = (None, None) if system == ROUTE else resolve(ctx, system)
    examples = read_inputs(ctx.task, input_path)
    folder = Path(out_dir) if out_dir else ctx.dir / ANSWERS
    stem = f"{Path(input_path).stem}.{system.replace(':', '-')}"
    check_same_input(folder / f"{stem}.input.json", input_path, system, ctx.cfg.evaluate.max_tokens)
    if system == ROUTE:
        answers = routed_answers(ctx, examples, folder, stem)
    else:
        backend = build_backend(ctx.cfg.backend, str(checkpoint), ctx.dir, checkpoint=True) if checkpoint else ctx.backend()
        params = SamplingParams(n=1, temperature=0.0, max_tokens=ctx.cfg.evaluate.max_tokens, logprobs=True)
        traces = run_method(method, examples, backend, params, folder / f"{stem}.traces.jsonl",
                            ctx.cfg.generation.chunk_sequences, desc=f"answer {system}")
        answers = [to_answer(ex, traces[ex.id][0], system) for ex in examples]
    out = folder / f"{stem}.jsonl"
    write_jsonl(out, answers)
    return out


def routed_answers(ctx, examples: list[Example], folder: Path, stem: str) -> list[Answer]:
    """The run's router (config ``route``, scored by its evaluate stage) on new inputs: the distilled answer
    where its confidence reaches the threshold chosen there, System 2's where it does not."""
    from sys2distill.backends.build import build_backend
    from sys2distill.generation import load_traces, run_method
    from sys2distill.stages.routing import confidences, route_spec

    if ctx.cfg.route is None:
        raise UserError(f"{ctx.dir} has no router: run `sys2distill run {ctx.dir} 'route={{}}'` first, then answer "
                        "with --system route")
    spec = route_spec(ctx)
    record = rundir.read_json(ctx.dir / "evaluate" / f"route_{spec.key}.json")
    if record is None:
        raise UserError(f"{ctx.dir}/evaluate/route_{spec.key}.json is missing: run `sys2distill run {ctx.dir}` so "
                        "the evaluate stage chooses the router's threshold")
    threshold = record["choice"]["threshold"]
    threshold = math.inf if threshold is None else threshold
    checkpoint = ctx.dir / "train" / spec.key
    model = build_backend(ctx.cfg.backend, str(checkpoint), ctx.dir, checkpoint=True)
    confidence, _, cost = confidences(ctx, model, examples, folder, f"{stem}.traces")
    first = load_traces(folder / f"{stem}.traces_distilled.jsonl")
    unsure = [ex for ex, c in zip(examples, confidence) if c < threshold]
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=ctx.cfg.evaluate.max_tokens)
    fallback = run_method(ctx.method(spec.method), unsure, ctx.backend(), greedy, folder / f"{stem}.traces_{spec.method}.jsonl",
                          ctx.cfg.generation.chunk_sequences, desc=f"answer route: {spec.method} on {len(unsure)} unsure")
    answers = []
    for ex, c, extra in zip(examples, confidence, cost):
        own, other = first[ex.id][0], (fallback.get(ex.id) or [None])[0]
        chosen = other or own
        answers.append(Answer(id=ex.id, row=ex.metadata["row"], question=ex.question, answer=chosen.answer,
                              output=chosen.final, tokens=own.tokens + extra + (other.tokens if other else 0),
                              confidence=c, system=ROUTE, routed=other is not None))
    return answers


def default_system(ctx) -> str:
    """The first trained distill entry of a System 2 method, else the first trained entry."""
    trained = [s for s in ctx.cfg.distill.specs if (ctx.dir / "train" / s.key / rundir.DONE).exists()]
    if not trained:
        raise UserError(f"{ctx.dir} has no trained model: run `sys2distill run` first, or pass --system METHOD "
                        "to answer with a prompting method of the base model")
    spec = next((s for s in trained if not ctx.method(s.method).system1), trained[0])
    return DISTILLED + spec.key


def resolve(ctx, system: str):
    """(the method that prompts, the checkpoint folder or None for the base model) of ``system``."""
    known = {**methods.REGISTRY, **ctx.cfg.chains, **{DISTILLED + s.key: None for s in ctx.cfg.distill.specs}}
    check_registered(known, system, "system")
    if system.startswith(DISTILLED):
        checkpoint = ctx.dir / "train" / system[len(DISTILLED):]
        if not (checkpoint / rundir.DONE).exists():
            raise UserError(f"{checkpoint} has not finished training: run `sys2distill run` on this run first")
        return ctx.method("system1"), checkpoint
    return ctx.method(system), None


def check_same_input(record: Path, input_path: str | Path, system: str, max_tokens: int) -> None:
    """Traces of another input, or made with another token limit, must not be resumed: the input's sha256
    and the limit are recorded beside them."""
    now = {"input": str(input_path), "sha256": rundir.sha256(Path(input_path).expanduser()), "system": system,
           "max_tokens": max_tokens}
    if record.exists():
        seen = rundir.read_json(record) or {}
        fix = (f"pass --output DIR for the new answers, or delete {record.with_suffix('').with_suffix('')}.* to "
               "redo them")
        if seen.get("sha256") != now["sha256"]:
            raise UserError(f"{input_path} changed since {record.parent} answered it with {system}: {fix}")
        if seen.get("max_tokens") != max_tokens:
            raise UserError(f"{record.parent} answered {input_path} with {system} at evaluate.max_tokens="
                            f"{seen.get('max_tokens')}, not {max_tokens}: {fix}")
        return
    rundir.write_atomic(record, json.dumps(now))


def to_answer(example: Example, trace, system: str) -> Answer:
    final = trace.steps[-1]
    logprob = getattr(final, "logprob", None)
    return Answer(id=example.id, row=example.metadata["row"], question=example.question, answer=trace.answer,
                  output=trace.final, tokens=trace.tokens, system=system,
                  confidence=None if logprob is None else math.exp(logprob))


__all__ = ["Answer", "answer_file", "read_inputs"]

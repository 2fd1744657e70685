"""What every method shares: prompt lookup, batched steps, and building ``Trace`` records."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from sys2distill.backends.base import Backend, Messages, SamplingParams
from sys2distill.errors import UserError
from sys2distill.records import Completion, Example, Step, Trace
from sys2distill.tasks.base import Task


class Method:
    """A way of answering: ``run(examples, backend, params)`` → ``params.n`` traces per example.

    ``PROMPTS`` maps a prompt name to a ``str.format`` template; a task-specific variant is
    stored as ``"name@task"`` (RaR words its rephrase step differently per task). Config
    overrides (``prompts: {method: {name: template}}``) win over both. ``OPTIONS`` holds the
    method's knobs and their defaults (config: ``method_options: {method: {option: value}}``).
    """

    name: ClassVar[str]
    label: ClassVar[str]  # how reports name it, e.g. "RaR 2-step"
    #: A System 1: it answers without intermediate text (a distill entry of it is a "Distill System 1" baseline).
    system1: ClassVar[bool] = False
    PROMPTS: ClassVar[dict[str, str]] = {}
    OPTIONS: ClassVar[dict[str, object]] = {}

    def __init__(self, task: Task, prompts: dict[str, str] | None = None, options: dict[str, object] | None = None):
        self.task = task
        unknown_options = set(options or {}) - set(self.OPTIONS)
        if unknown_options:
            raise UserError(f"method {self.name!r} has no option {sorted(unknown_options)[0]!r}: "
                            f"its options are {sorted(self.OPTIONS) or 'none'}")
        self.options = {**self.OPTIONS, **(options or {})}
        self.overrides = dict(prompts or {})
        unknown = set(self.overrides) - {k.split("@")[0] for k in self.PROMPTS}
        if unknown:
            raise UserError(
                f"method {self.name!r} has no prompt {sorted(unknown)[0]!r}: its prompts are {sorted({k.split('@')[0] for k in self.PROMPTS})}"
            )

    def template(self, key: str) -> str:
        return self.overrides.get(key) or self.PROMPTS.get(f"{key}@{self.task.prompt_variant}") or self.PROMPTS[key]

    def prompt(self, key: str, example: Example, **fields: object) -> Messages:
        """Render one prompt as a single user turn (the chat template is the backend's job)."""
        try:  # the method's own fields win over a task's of the same name (a dataset row's columns)
            text = self.template(key).format(**{**self.task.prompt_fields(example), **fields, "question": example.question})
        except KeyError as e:
            raise UserError(f"prompt {self.name}.{key} uses unknown placeholder {e}: available are "
                            f"{{question}}, {', '.join('{%s}' % k for k in [*self.task.prompt_fields(example), *fields])}") from None
        return [{"role": "user", "content": text}]

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        raise NotImplementedError

    def trace(self, example: Example, sample: int, steps: list[Step]) -> Trace:
        final = steps[-1].output
        return Trace(example_id=example.id, method=self.name, sample=sample, steps=steps, final=final,
                     answer=self.task.extract_answer(final), tokens=sum(s.completion_tokens for s in steps))


def make_step(name: str, messages: Messages, c: Completion) -> Step:
    return Step(name=name, messages=messages, output=c.text, prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens, finish_reason=c.finish_reason, logprob=c.logprob)


class SingleStepMethod(Method):
    """A method that is one generation from one prompt named ``answer``."""

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        prompts = [self.prompt("answer", ex) for ex in examples]
        outs = backend.generate(prompts, params)
        return [[self.trace(ex, j, [make_step("answer", p, c)]) for j, c in enumerate(cs, params.first_sample)]
                for ex, p, cs in zip(examples, prompts, outs)]


class TwoStepMethod(Method):
    """Rewrite the input, then answer the rewrite alone (RaR 2-step, S2A).

    With ``n`` samples, each of the ``n`` rewrites gets one answer, so the ``n`` traces are
    ``n`` independent System 2 runs. The answer is seeded by its rewrite (``first_sample=0``),
    so sample j is the same however samples are batched; the seed shift keeps step 2 from
    replaying step 1's draws. #Tokens counts both steps.
    """

    steps: ClassVar[tuple[str, str]]  # prompt names of the two steps
    rewrite_field: ClassVar[str]  # the placeholder under which step 2's prompt receives step 1's output

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        first, second = self.steps
        first_prompts = [self.prompt(first, ex) for ex in examples]
        rewrites = backend.generate(first_prompts, params)
        second_prompts = [self.prompt(second, ex, **{self.rewrite_field: c.text})
                          for ex, cs in zip(examples, rewrites) for c in cs]
        answers = iter(backend.generate(second_prompts, replace(params, n=1, seed=params.seed + 1, first_sample=0)))
        prompts = iter(second_prompts)
        return [[self.trace(ex, j, [make_step(first, p1, c1), make_step(second, next(prompts), next(answers)[0])])
                 for j, c1 in enumerate(cs, params.first_sample)]
                for ex, p1, cs in zip(examples, first_prompts, rewrites)]

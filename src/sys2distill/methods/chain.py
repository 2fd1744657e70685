"""A System 2 method written as YAML steps (arXiv 2407.06023 Sec. 3: any method whose last output
is the answer can be distilled; the intermediate outputs are thrown away).

Each step is a chat prompt over ``{question}``, the task's fields and earlier steps' outputs
(``{rephrase}``), with its own ``max_tokens``/``stop``; a step with ``n: k`` samples k branches,
joined for the later step that merges them (BSM's fan-out, Sec. 4.3). The last step's output is
the final response. RaR 1-/2-step, S2A and CoT written as chains (``configs/chains/``) send the
same prompts and draw the same samples as their Python classes (``tests/test_chain.py``):

- step 1 samples ``n`` outputs per input (sample j is draw j, or draws j·k … j·k+k-1 for k
  branches), so sample j is the same however samples are batched or resumed;
- step i > 1 answers each sample's own prompt with seed ``seed + i - 1`` and draws from 0, as
  ``TwoStepMethod`` (seed + 1) and BSM (seed + 1, seed + 2) do.

Chains are not in ``methods.REGISTRY``: each is named by its key under ``chains:`` in the run
config, and that name is used in ``distill.methods`` and ``evaluate.systems``.
"""

from __future__ import annotations

import difflib
import string
from dataclasses import replace

from sys2distill.backends.base import Backend, Messages, SamplingParams
from sys2distill.config import ChainConfig, ChainStep
from sys2distill.errors import UserError
from sys2distill.methods.base import Method, make_step
from sys2distill.records import Example, Step, Trace
from sys2distill.tasks.base import Task


class Chain(Method):
    """The steps of one ``chains:`` entry, run in order, each as one batched backend call."""

    def __init__(self, name: str, spec: ChainConfig, task: Task):
        self.name, self.label, self.steps = name, spec.label or name, spec.steps
        self.PROMPTS = {s.name: s.prompt for s in spec.steps}  # what ``Method.prompt`` renders
        super().__init__(task)
        self._check()

    def _check(self) -> None:
        """Every placeholder names the question, a task field or an earlier step; fail at setup."""
        fixed = ["question", *self.task.prompt_field_names]
        names = [s.name for s in self.steps]
        for i, step in enumerate(self.steps):
            where = f"chain {self.name!r} step {step.name!r}"
            if not step.name.isidentifier() or step.name in fixed:
                raise UserError(f"{where}: a step name must be a plain identifier other than {', '.join(fixed)} "
                                "(later steps use it as a placeholder)")
            if step.name in names[:i]:
                raise UserError(f"{where}: two steps share this name: rename one")
            for field in _placeholders(step.prompt, where):
                if field in fixed or field in names[:i]:
                    continue
                if field in names:
                    raise UserError(f"{where} uses {{{field}}}, the output of {'itself' if field == step.name else 'a later step'}: "
                                    f"a step can use only earlier steps' outputs; move step {field!r} before {step.name!r}")
                available = [*fixed, *names[:i]]
                close = difflib.get_close_matches(field, available, n=1)
                hint = f"did you mean {{{close[0]}}}? " if close else ""
                raise UserError(f"{where} uses {{{field}}}, which is no step, task field or {{question}}: {hint}"
                                f"available here are {', '.join('{%s}' % a for a in available)}")
        if self.steps[-1].n > 1:
            raise UserError(f"chain {self.name!r}: the last step ({self.steps[-1].name!r}) gives the final response, so it "
                            "cannot have n > 1: add a step that merges its branches")

    def messages(self, step: ChainStep, example: Example, outputs: dict[str, str]) -> Messages:
        user = self.prompt(step.name, example, **outputs)
        return ([{"role": "system", "content": step.system}] if step.system is not None else []) + user

    def params(self, i: int, step: ChainStep, params: SamplingParams) -> SamplingParams:
        """Step i's sampling: its own limits; later steps seeded apart from step 1 (module docstring)."""
        own = replace(params, max_tokens=step.max_tokens or params.max_tokens, stop=tuple(step.stop) or params.stop,
                      temperature=params.temperature if step.temperature is None else step.temperature)
        if i == 0:
            return replace(own, n=params.n * step.n, first_sample=params.first_sample * step.n)
        return replace(own, n=step.n, seed=params.seed + i, first_sample=0)

    def run(self, examples: list[Example], backend: Backend, params: SamplingParams) -> list[list[Trace]]:
        runs = [(ex, j) for ex in examples for j in range(params.n)]  # one System 2 run per (example, sample)
        outputs: list[dict[str, str]] = [{} for _ in runs]
        steps: list[list[Step]] = [[] for _ in runs]
        for i, step in enumerate(self.steps):
            if i == 0:  # one prompt per example, its samples drawn together
                prompts = [self.messages(step, ex, {}) for ex in examples]
                drawn = backend.generate(prompts, self.params(i, step, params))
                per_run = [(prompts[r // params.n], drawn[r // params.n][(r % params.n) * step.n:][:step.n])
                           for r in range(len(runs))]
            else:  # one prompt per run: it holds that run's earlier outputs
                prompts = [self.messages(step, ex, out) for (ex, _), out in zip(runs, outputs)]
                per_run = list(zip(prompts, backend.generate(prompts, self.params(i, step, params))))
            for r, (prompt, completions) in enumerate(per_run):
                outputs[r][step.name] = step.join.join(c.text for c in completions)
                steps[r] += [make_step(step.name if step.n == 1 else f"{step.name}#{b}", prompt, c)
                             for b, c in enumerate(completions, 1)]
        traces = [self.trace(ex, params.first_sample + j, s) for (ex, j), s in zip(runs, steps)]
        return [traces[k:k + params.n] for k in range(0, len(traces), params.n)]


def _placeholders(template: str, where: str = "chain step") -> list[str]:
    """The field names a ``str.format`` template uses (``{a.b}`` and ``{a[0]}`` count as ``a``)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise UserError(f"{where}: prompt is not a valid template ({e}): write {{{{ and }}}} for literal braces") from None
    if any(f == "" or f[0].isdigit() for f in fields):
        raise UserError(f"{where}: prompt has a positional placeholder ({{}} or {{0}}): name what goes there, e.g. "
                        "{question}, or write {{ and }} for literal braces")
    return [f.split(".")[0].split("[")[0] for f in fields]

"""The exact text each step of a method sends, for one real item (``sys2distill show-prompt``).

Scores swing with prompts and chat templates, so a user should read what the model reads before
paying for a run: each step's messages rendered by the model's own tokenizer
(``apply_chat_template``, the ``hf`` backend's rendering: system prompt and special tokens
included), in the order the steps run. A step that needs an earlier step's output shows
``<output of step NAME>`` there: the method runs on a backend that answers with tags, so this
works for every method, built-in or chain, without knowing its steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.errors import UserError
from sys2distill.methods.base import Method
from sys2distill.records import Completion, Example


@dataclass
class StepPreview:
    name: str
    messages: Messages  # with earlier outputs replaced by "<output of step NAME>"
    needs: list[str]  # the earlier steps whose outputs this step's prompt holds


class _TagBackend:
    """Answers every prompt with a unique tag, so each output can be traced to the step that wrote it."""

    model_id = "preview"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        self.calls += 1
        return [[Completion(f"\x00{self.calls}.{i}.{j}\x00", 0, 0) for j in range(params.first_sample, params.first_sample + params.n)]
                for i in range(len(prompts))]


def preview_steps(method: Method, example: Example) -> list[StepPreview]:
    """Every model call of one System 2 run on ``example``, in the order they are made."""
    ((trace,),) = method.run([example], _TagBackend(), SamplingParams(n=1))
    raw = {step.output: step.name for step in trace.steps}
    # BSM names its Solve steps after criteria parsed from the plan, so a name can hold a tag too.
    names = {tag: _untag(name, raw, "<from step {}>") for tag, name in raw.items()}

    def fill(text: str) -> str:
        return _untag(text, names, "<output of step {}>")

    out = []
    for step in trace.steps:
        if not step.messages:  # e.g. BSM's "merge: sum" adds scores without a model call
            continue
        needs = [n for tag, n in names.items() if any(tag in m["content"] for m in step.messages)]
        out.append(StepPreview(names[step.output], [{**m, "content": fill(m["content"])} for m in step.messages],
                               list(dict.fromkeys(needs))))
    return out


def _untag(text: str, raw: dict[str, str], form: str) -> str:
    for tag, name in raw.items():
        text = text.replace(tag, form.format(name))
    return text


def load_tokenizer(model: str):
    """The model's tokenizer, for its chat template; a clear line if it cannot be had offline."""
    from transformers import AutoTokenizer

    from sys2distill.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(model))
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"could not load the tokenizer of model {model!r} to render its chat template: {first} — use "
                        "'embedded', a local checkpoint folder, or a Hub id in your cache") from None


def render(tokenizer, messages: Messages) -> str:
    """The text the model reads: what ``HFBackend.render`` produces."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

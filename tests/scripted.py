"""A scripted backend for testing method, filter and dataset logic without a model."""

from __future__ import annotations

from typing import Callable

from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.records import Completion


class ScriptedBackend:
    """Answers with ``reply(prompt_text, sample_index)`` (the global index j); tokens are counted as words."""

    model_id = "scripted"

    def __init__(self, reply: Callable[[str, int], str]):
        self.reply = reply
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        texts = [m[-1]["content"] for m in prompts]
        self.calls.append((texts, params))
        return [[Completion(text=(out := self.reply(t, j)), prompt_tokens=len(t.split()), completion_tokens=len(out.split()))
                 for j in range(params.first_sample, params.first_sample + params.n)] for t in texts]

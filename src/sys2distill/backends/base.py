"""The backend protocol: batch-first chat generation that counts tokens exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sys2distill.records import Completion

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings for one ``generate`` call (OpenAI / vLLM names)."""

    n: int = 1  # samples per prompt
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 256  # new tokens per sample
    stop: tuple[str, ...] = field(default_factory=tuple)  # cut the text before the first stop string
    seed: int = 0  # sample j of a prompt is reproducible from (seed, prompt, j), whatever the batch
    first_sample: int = 0  # the n samples are j = first_sample … first_sample+n-1 (resume / adaptive sampling)
    logprobs: bool = False  # fill Completion.logprob (backends that have log-probs; others leave it None)


class Backend(Protocol):
    """Anything that turns chat prompts into completions.

    ``generate(prompts, params)`` returns, for every prompt, ``params.n`` completions with
    the exact number of prompt and generated tokens.
    """

    model_id: str

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]: ...

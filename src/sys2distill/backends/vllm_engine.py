"""Offline vLLM backend (issue 5, part 4): ``LLM.generate`` with ``SamplingParams(n=…)``.

For GPU machines (``pip install 'sys2distill[vllm]'``); vLLM is imported only when the
backend is built, so everything else runs without it. Prompts are rendered with the model's
chat template and passed as token ids, tokenised without special tokens exactly as the HF
backend does (passing text would let vLLM add a second BOS). Each prompt gets its own seed
from (seed, prompt), so a prompt's n samples do not depend on the rest of the batch; vLLM
draws all n from one request, so sample j is reproducible for a given n.
"""

from __future__ import annotations

from sys2distill.backends import register_backend
from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.backends.hf import sample_seed
from sys2distill.errors import UserError
from sys2distill.models import EMBEDDED, model_identity, resolve_model
from sys2distill.records import Completion

INSTALL = "pip install 'sys2distill[vllm]'"


@register_backend("vllm")
class VLLMBackend:
    """Generate with a ``vllm.LLM`` on one or ``tensor_parallel_size`` GPUs."""

    def __init__(self, model: str = EMBEDDED, dtype: str = "bfloat16", tensor_parallel_size: int = 1):
        try:
            import vllm
        except ImportError:
            raise UserError(f"backend 'vllm' needs vLLM (Linux, CUDA GPU): run `{INSTALL}`") from None
        self.vllm = vllm
        self.model_id = f"vllm:{model_identity(model)}"
        # seed: vLLM's default generator for requests without one; ours always carry a seed
        self.llm = vllm.LLM(model=resolve_model(model), dtype=dtype, tensor_parallel_size=tensor_parallel_size, seed=0)
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, messages: Messages) -> str:
        """The exact prompt text the model sees (the tokenizer's chat template)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def sampling_params(self, params: SamplingParams, prompt: str):
        """Our ``SamplingParams`` as vLLM's; greedy asks for one sample (they would all be equal)."""
        greedy = params.temperature == 0
        return self.vllm.SamplingParams(
            n=1 if greedy else params.n,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            seed=sample_seed(params.seed, prompt, 0) % 2**31,
            skip_special_tokens=True,
        )

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        texts = [self.render(m) for m in prompts]
        inputs = [{"prompt_token_ids": self.tokenizer(t, add_special_tokens=False).input_ids} for t in texts]
        outs = self.llm.generate(inputs, [self.sampling_params(params, t) for t in texts], use_tqdm=False)
        result = []
        for out in outs:
            comps = [Completion(text=o.text.strip(), prompt_tokens=len(out.prompt_token_ids),
                                completion_tokens=len(o.token_ids),
                                finish_reason="length" if o.finish_reason == "length" else "stop")
                     for o in out.outputs]
            result.append(comps * (params.n // len(comps)))
        return result

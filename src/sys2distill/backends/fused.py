"""Decoding-step kernels fused by ``torch.compile`` (inductor's C++ backend), with an eager fallback.

A decoding step at a few hundred rows is dozens of small ops per layer besides the matmuls; in
bf16 each elementwise op also casts to fp32 and back, and the CPU flash-attention kernel spends
most of its time on per-head set-up for the generated part's three-query problems. Inductor
fuses such a chain into one loop nest. Compiling costs seconds once per process (and less when
inductor's on-disk cache already holds the kernels); where it is unavailable (no C++ compiler, a
torch without inductor) or fails, :class:`Fused` says so once and its callers go back to the
eager ops they used before.
Measurements: ``bench/README.md`` ("bf16 decoding").
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext

import torch

log = logging.getLogger(__name__)


def _size_oblivious():
    """Dynamic sizes compiled without the special case of size 1 (one prompt or one row left at the end
    of a batch, one generated position in the first step), which would otherwise cost a compile each."""
    try:
        from torch.fx.experimental import _config
        return _config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError):
        return nullcontext()


class Fused:
    """``fn`` compiled on first use (shapes that change between calls become dynamic); from the first
    failure on, eager — and ``failed`` tells callers with a faster eager route to take it."""

    def __init__(self, fn, compile: bool = True):
        self.fn = fn
        self.compile = compile  # False: always eager (tests)
        self._compiled = None
        self.failed = False
        self._lock = threading.Lock()

    def __call__(self, *args):
        if self.failed or not self.compile:
            return self.fn(*args)
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = torch.compile(self.fn)
        try:
            with _size_oblivious():
                return self._compiled(*args)
        except Exception as e:  # noqa: BLE001 — any compiler failure: the eager function computes the same
            self.failed = True
            log.warning("torch.compile of %s failed (%s: %s); running it eagerly",
                        self.fn.__name__, type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
            return self.fn(*args)


def _decode_attention(q: torch.Tensor, places: torch.Tensor, samples: int, prompt_keys: torch.Tensor,
                      prompt_values: torch.Tensor, prompt_mask: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      key_bias: torch.Tensor, live: torch.Tensor, scale: float) -> torch.Tensor:
    """One decoding step of shared-prefix attention (``shared_prefix.py``), computed in fp32.

    ``q`` [rows, kv_heads, groups, dim]: the queries of cache rows ``live``; ``places``: where they go
    in the prompts' ``samples × groups`` query blocks (``SharedPrefixCache.query_places``); ``prompt_keys``/
    ``prompt_values`` [prompts, kv_heads, prompt_len, dim] and ``prompt_mask`` (additive) in fp32;
    ``key``/``value`` [chunks, cache rows, kv_heads, chunk, dim]: the generated tokens' cache, with
    ``key_bias`` [chunks, chunk] (additive: ``-inf`` past the last generated position).

    The prompt part stays a matrix product per prompt (its rows' queries share the keys). The
    generated part is written as products and sums rather than matmuls so that inductor fuses the
    row gather, both reductions and the softmax into loops that read each key and value once
    (eagerly it materialises [chunks, rows, kv_heads, groups, chunk, dim] products: fine for tests,
    slow for real batches); each chunk gets its own softmax, merged by log-sum-exp (split-K, as
    FlashDecoding), and the merge with the prompt part follows, with one rounding to the model's
    dtype at the end.
    """
    prompts, kv_heads, _, dim = prompt_keys.shape
    rows, _, groups, _ = q.shape
    qf = q.float()
    block = qf.new_zeros(prompts * kv_heads * samples * groups, dim).index_copy(0, places, qf.reshape(-1, dim))
    block = block.view(prompts, kv_heads, -1, dim)
    scores_p = torch.matmul(block, prompt_keys.transpose(-1, -2)) * scale + prompt_mask
    lse_p = scores_p.logsumexp(-1, keepdim=True)
    out_p = torch.matmul((scores_p - lse_p).exp(), prompt_values)
    out_p = out_p.reshape(-1, dim).index_select(0, places).view(rows, kv_heads, groups, dim)
    lse_p = lse_p.reshape(-1).index_select(0, places).view(rows, kv_heads, groups)
    k = key.index_select(1, live).float().unsqueeze(3)  # [chunks, rows, kv_heads, 1, chunk, dim]
    v = value.index_select(1, live).float().unsqueeze(3)
    scores = (qf[None, :, :, :, None, :] * k).sum(-1) * scale + key_bias[:, None, None, None, :]
    top = scores.amax(-1, keepdim=True)  # [chunks, rows, kv_heads, groups, 1]
    e = (scores - top).exp()
    total = e.sum(-1, keepdim=True)
    out_c = (e.unsqueeze(-1) * v).sum(-2) / total  # [chunks, rows, kv_heads, groups, dim]
    lse_c = (top + total.log()).squeeze(-1)
    lse_g = lse_c.logsumexp(0)
    out_g = ((lse_c - lse_g).exp().unsqueeze(-1) * out_c).sum(0)
    # Σ_part exp(lse_part − lse) · out_part for two parts, as in shared_prefix_attention.
    weight = torch.sigmoid(lse_p - lse_g).unsqueeze(-1)
    return torch.lerp(out_g, out_p, weight).to(q.dtype)


decode_attention = Fused(_decode_attention)


def mark_dynamic(tensor: torch.Tensor, *dims: int) -> None:
    """Compile for any size of these dimensions from the first call on: left to dynamo, a changed
    size is first compiled static and then again as dynamic — a couple of seconds each, inside the
    first generation (``torch._dynamo.maybe_mark_dynamic`` is a hint: sizes 0 and 1 are still
    specialised, so e.g. the first step, at one position, compiles apart)."""
    mark = getattr(getattr(torch, "_dynamo", None), "maybe_mark_dynamic", None)
    if mark is not None:
        for dim in dims:
            mark(tensor, dim)


def mark_decode_dynamic(q, places, prompt_keys, prompt_values, prompt_mask, key, value, key_bias, live,
                        chunked: bool = True) -> None:
    """:func:`mark_dynamic` for ``decode_attention``'s rows, prompts, positions and chunks. The chunk
    length stays static, unless the cache is not ``chunked`` (per-row buffers: one chunk of every position)."""
    cache, bias = ((0, 1), (0,)) if chunked else ((0, 1, 3), (0, 1))  # chunks, rows (and chunk length)
    for tensor, dims in ((q, (0,)), (places, (0,)), (prompt_keys, (0, 2)), (prompt_values, (0, 2)),
                         (prompt_mask, (0, 3)), (key, cache), (value, cache), (key_bias, bias), (live, (0,))):
        mark_dynamic(tensor, *dims)

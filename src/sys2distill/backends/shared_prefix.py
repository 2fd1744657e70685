"""Shared-prefix ("cascade") attention: the ``n`` samples of a prompt read its KV cache once.

Self-consistency samples ``n`` continuations of every prompt (arXiv 2407.06023 §2: majority vote
and USC over ``N`` System 2 samples). With a per-row KV cache each of the ``n`` rows holds its own
copy of the prompt's keys and values, and every decoding step reads all ``n`` copies — attention
over that cache was a fifth of sampling time on CPU, all of it memory traffic. Here the prompt's
keys and values are stored once per prompt and the generated tokens' once per row. Attention
splits at that boundary (the log-sum-exp merge of FlashAttention's split softmax, used for
shared prefixes by FlashInfer's cascade inference and Hydragen):

- prompt part: the ``n × groups`` queries of a prompt's rows form one matrix against the prompt's
  keys — one read of the prompt KV and a real matrix product instead of ``n`` thin ones;
- generated part: each row's query against its own generated keys (no padding: every row of a
  batch has generated the same number of tokens, finished rows included);
- merge: ``out = Σ_part exp(lse_part − lse) · out_part`` with ``lse = logaddexp(lse_prompt, lse_gen)``,
  for two parts ``lerp(out_gen, out_prompt, sigmoid(lse_prompt − lse_gen))``.

The prompt is prefilled with the model's own attention; only single-token decoding steps use
:func:`shared_prefix_attention`, and only while :func:`decoding_with_shared_prefix` is active.

For the compiled step (``fused.py``) the generated keys and values are stored in chunks of
:data:`KV_CHUNK` positions, ``[chunks, rows, kv_heads, KV_CHUNK, head_dim]``, rather than per row
with spare room, ``[rows, kv_heads, capacity, head_dim]``: each filled chunk is one contiguous block
that the kernel reads front to back, where the per-row layout breaks the read into a block per row
and head (a cold start each). The kernel attends to each chunk and merges the chunks by log-sum-exp
(FlashDecoding's split-K), masking the unfilled end of the last one. Measurements: bench/README.md.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer

from sys2distill.backends.fused import decode_attention, mark_decode_dynamic

ATTENTION_NAME = "sys2distill_shared_prefix"

# Positions per chunk of the compiled step's generated cache: shorter chunks leave less of the last
# one empty, longer ones fewer merges (16 / 32 / 64 measured; bench/README.md "bf16 decoding").
KV_CHUNK = 32

# Returns (output, logsumexp): the public ``scaled_dot_product_attention`` drops the logsumexp the
# merge needs. CPU kernel; on other devices the same function falls back to the math below.
_flash_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float,
                       mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention returning the output and the natural-log sum of exp(scores) per query."""
    if query.device.type == "cpu":
        out, lse = _flash_cpu(query, key, value, 0.0, False, attn_mask=mask, scale=scale)
        return out, lse
    scores = (query @ key.transpose(-1, -2)).float() * scale
    if mask is not None:
        scores = scores + mask
    lse = scores.logsumexp(-1)
    return ((scores - lse.unsqueeze(-1)).exp().to(value.dtype) @ value), lse


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` that writes each new position into reserved space instead of concatenating.

    ``DynamicLayer.update`` copies the whole cache at every decoded token (``torch.cat``): with 64
    rows and a few hundred positions that was 29% of decoding time on CPU. Here keys and values
    live in a buffer with ``reserve`` spare positions; ``keys``/``values`` are views of its filled
    part, so attention sees exactly the tensors a ``DynamicLayer`` would hold (tested: same tokens).
    """

    rows_dim = 0  # the buffers' row dimension

    def __init__(self, reserve: int, **kwargs):
        super().__init__(**kwargs)
        self.reserve = max(1, reserve)
        self._k = self._v = None  # [batch, heads, capacity, head_dim]
        self._len = 0
        # The buffer rows the next update writes, in the order of its batch, and the buffer's row
        # count (``None``: the update holds every row, in order). See ``SharedPrefixCache.decode_rows``.
        self.rows: torch.Tensor | None = None
        self.batch = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        key_states, value_states = self._every_row(key_states, value_states)
        end = self._len + key_states.shape[-2]
        if self._k is None or end > self._k.shape[-2]:
            self._resize(end + self.reserve, key_states, value_states)
        self._k[:, :, self._len:end] = key_states
        self._v[:, :, self._len:end] = value_states
        self._len = end
        self._views()
        return self.keys, self.values

    def _every_row(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's keys and values for every cache row: zeros for the rows not fed (``rows``)."""
        if self.rows is None:
            return key_states, value_states
        # The other rows have finished: their outputs are never read again, but attention still
        # runs over them, and a buffer reused from freed memory can hold any bit pattern — integers
        # read as denormal floats slow the kernel several-fold (bench/README.md, sampling.py's notes).
        return tuple(x.new_zeros(self.batch, *x.shape[1:]).index_copy_(0, self.rows, x)
                     for x in (key_states, value_states))

    def _resize(self, capacity: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        k = key_states.new_empty(*key_states.shape[:2], capacity, key_states.shape[-1])
        v = value_states.new_empty(*value_states.shape[:2], capacity, value_states.shape[-1])
        if self._len:
            k[:, :, :self._len], v[:, :, :self._len] = self.keys, self.values
        self._k, self._v = k, v

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, :self._len], self._v[:, :, :self._len]

    def generated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values as ``[rows, kv_heads, positions, head_dim]``."""
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._len:
            self._k, self._v = (x.repeat_interleave(repeats, self.rows_dim) for x in (self._k, self._v))
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Row ``i`` becomes row ``indices[i]``, in place: only the rows whose position changes are
        copied, and only their filled positions. A gather of the whole buffer (``DynamicLayer``'s
        way) copies every kept row with its spare room — ~0.75 GB over 30 layers at 256 rows and
        128 reserved positions. Moving the live rows past the new end into the finished rows'
        places (``hf.compacted_order``) copies at most a quarter of the rows per compaction."""
        if not self._len:
            return
        rows = self.rows_dim
        if len(indices) > self._k.shape[rows]:  # rows repeated: a gather
            self._k, self._v = (x.index_select(rows, indices) for x in (self._k, self._v))
        else:
            moved = (indices != torch.arange(len(indices), device=indices.device)).nonzero().squeeze(1)
            if len(moved):  # the right side is gathered before the write: overlapping moves are safe
                src = indices[moved]
                for filled in (self.keys, self.values):  # views of the buffers' filled positions
                    filled.index_copy_(rows, moved, filled.index_select(rows, src))
            self._k, self._v = (x.narrow(rows, 0, len(indices)) for x in (self._k, self._v))
        self._views()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:  # as DynamicLayer.crop
            raise ValueError(f"Calling `crop` with a positive value (`{tokens_to_remove}`) is not supported")
        if self._k is not None:
            self._len = max(0, self._len + tokens_to_remove)
            self._views()

    def reset(self) -> None:
        self._k = self._v = None
        self._len = 0
        super().reset()


def reserved_cache(config, reserve: int) -> DynamicCache:
    """A ``DynamicCache`` of ``ReservedLayer``s with room for ``reserve`` more tokens per layer: the
    per-row cache, for one sample per prompt or models without shared-prefix attention."""
    cache = DynamicCache(config=config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):  # sliding-window models keep their layers
        cache.layers = [ReservedLayer(reserve) for _ in cache.layers]
    return cache


@functools.lru_cache(maxsize=64)
def chunk_bias(length: int, chunk: int, device: torch.device) -> torch.Tensor:
    """``[chunks, chunk]`` additive mask of ``length`` filled positions: 0, then ``-inf`` to the end of
    the last chunk (the same for every layer of a step: computed once)."""
    chunks = -(-length // chunk)
    bias = torch.zeros(chunks * chunk, device=device)
    bias[length:] = float("-inf")
    return bias.view(chunks, chunk)


class SharedPrefixLayer(ReservedLayer):
    """One layer's cache: prompt keys/values per prompt, generated keys/values per row.

    The first ``update`` (prefill) stores the prompts' keys and values and returns them for the
    model's own attention. Later updates store the generated tokens' and return them: in the
    reserved per-row buffer of :class:`ReservedLayer` (``[rows, kv_heads, positions, head_dim]``),
    or with ``chunk`` set, in chunks of that many positions (``[chunks, rows, kv_heads, chunk,
    head_dim]``, the module docstring; :func:`chunk_bias` masks the last one's unfilled end).
    """

    def __init__(self, reserve: int):
        super().__init__(reserve)
        self.prompt_keys = self.prompt_values = None  # [prompts, kv_heads, prompt_len, head_dim]
        self.chunk = 0  # positions per chunk of the generated cache; 0: the per-row buffer

    @property
    def rows_dim(self) -> int:
        return 1 if self.chunk else 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if self.prompt_keys is None:
            self.lazy_initialization(key_states, value_states)
            self.prompt_keys, self.prompt_values = key_states, value_states
            return key_states, value_states
        if not self.chunk:
            return super().update(key_states, value_states)
        key_states, value_states = self._every_row(key_states, value_states)
        for position in range(key_states.shape[-2]):
            chunk, slot = divmod(self._len, self.chunk)
            if self._k is None or chunk == self._k.shape[0]:
                self._add_chunks(chunk + max(1, -(-self.reserve // self.chunk)), key_states)
            if slot == 0:  # the unfilled slots are read (and masked): zeros, not stale bytes (see _every_row)
                self._k[chunk].zero_()
                self._v[chunk].zero_()
            self._k[chunk, :, :, slot] = key_states[:, :, position]
            self._v[chunk, :, :, slot] = value_states[:, :, position]
            self._len += 1
        self._views()
        return self.keys, self.values

    def _add_chunks(self, chunks: int, key_states: torch.Tensor) -> None:
        rows, kv_heads, _, dim = key_states.shape
        # One spare row: a compaction narrows the rows of each chunk in place, and the compiled kernel,
        # first called on chunks of exactly ``rows`` rows, would assume that and compile again.
        k, v = (key_states.new_empty(chunks, rows + 1, kv_heads, self.chunk, dim)[:, :rows] for _ in range(2))
        if self._k is not None:
            used = self._k.shape[0]
            k[:used], v[:used] = self._k, self._v
        self._k, self._v = k, v

    def _views(self) -> None:
        if not self.chunk:
            return super()._views()
        chunks = -(-self._len // self.chunk)
        self.keys, self.values = self._k[:chunks], self._v[:chunks]

    def generated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated tokens' keys and values as ``[rows, kv_heads, positions, head_dim]``
        (for the chunked layout a copy: the plain attention's input where a compile failed)."""
        if not self.chunk:
            return super().generated()
        return tuple(x.permute(1, 2, 0, 3, 4).flatten(2, 3)[:, :, :self._len] for x in (self.keys, self.values))

    def get_seq_length(self) -> int:
        prompt = 0 if self.prompt_keys is None else self.prompt_keys.shape[-2]
        return prompt + self._len

    def select_rows(self, rows: torch.Tensor, prompts: torch.Tensor | None) -> None:
        self.batch_select_indices(rows)
        if prompts is not None:
            self.prompt_keys, self.prompt_values = self.prompt_keys[prompts], self.prompt_values[prompts]


class SharedPrefixCache(DynamicCache):
    """A ``DynamicCache`` of :class:`SharedPrefixLayer` plus the row → prompt map attention needs.

    Rows start prompt-major (row ``p·n + j`` is sample ``j`` of prompt ``p``); ``slot`` remembers
    each row's place in that ``prompts × n`` block when finished rows are dropped and others move,
    so the queries of a prompt's live rows land in fixed slots of its ``n``-row block (empty slots
    are zero queries whose outputs are not read).
    """

    def __init__(self, config, reserve: int):
        super().__init__(config=config)
        self.layers = [SharedPrefixLayer(reserve) for _ in self.layers]
        self.samples = 1
        self.slot = None  # [rows] index into the prompts × samples block
        self.prompt_mask = None  # [prompts, 1, 1, prompt_len], 0 for tokens and -inf for left padding
        self._query_places = None  # this step's ``query_places``, shared by every layer
        self.fused = False  # decoding steps through fused.py's compiled attention (set before prefill)
        self.kv_chunk = KV_CHUNK  # with ``fused``: the generated cache's chunk length (0: per-row buffers)
        # With ``fused``: native.py's kernel instead of fused.py's, where it has a variant for the model's
        # shapes and dtype (decided at ``start_sampling``); set before prefill.
        self.native = None
        self.query_heads = config.num_attention_heads
        self._query_rows = None  # this step's ``query_rows``

    @staticmethod
    def supports(model) -> bool:
        """Models whose attention goes through transformers' attention interface and whose cache is
        plain full attention (sliding-window and hybrid models keep their own cache layers)."""
        plain = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
        return plain and getattr(model, "_supports_attention_backend", False)

    def start_sampling(self, samples: int, attention_mask: torch.Tensor, dtype: torch.dtype) -> None:
        """After prefill: every prompt now has ``samples`` rows; ``attention_mask`` is the prompts' 2D mask."""
        self.samples = samples
        self.slot = torch.arange(attention_mask.shape[0] * samples, device=attention_mask.device)
        if self.native is not None:
            prompt_keys = self.layers[0].prompt_keys
            kv_heads, dim = prompt_keys.shape[1], prompt_keys.shape[-1]
            if not (self.fused and prompt_keys.device.type == "cpu" and prompt_keys.dtype == torch.bfloat16
                    and self.native.supports_attention(dim, self.query_heads // kv_heads)):
                self.native = None
        if self.fused:  # both kernels compute in fp32: the mask in fp32, and for fused.py's the prompt's keys/values too
            dtype = torch.float32
            # (converted once, exactly; the native kernel widens them as it reads, from one block each)
            convert = torch.Tensor.contiguous if self.native is not None else torch.Tensor.float
            for layer in self.layers:
                layer.prompt_keys, layer.prompt_values = convert(layer.prompt_keys), convert(layer.prompt_values)
                layer.chunk = self.kv_chunk
        zeros = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
        self.prompt_mask = zeros.masked_fill(attention_mask == 0, float("-inf"))[:, None, None, :]
        self._query_places = self._query_rows = None

    def decode_rows(self, rows: torch.Tensor | None) -> None:
        """The next decoding step feeds the model these cache rows only (``None``: every row, in order).

        Finished rows stay in the cache until a compaction moves the live ones together; feeding
        them to the model meanwhile would cost every layer a row of compute per finished row
        (bench/README.md, sampling.py's notes). With ``rows`` set, the step's keys and values are written to
        those rows (zeros to the others) and attention answers for those rows."""
        for layer in self.layers:
            layer.rows, layer.batch = rows, len(self.slot)
        self._query_places = self._query_rows = None

    def query_places(self, rows: torch.Tensor | None, kv_heads: int, groups: int) -> torch.Tensor:
        """Where each query of this step goes in the prompts' query blocks: the flat index, in a
        ``[prompts, kv_heads, samples × groups]`` block, of query ``(row, kv head, group)`` (row-major).
        One gather/scatter with it replaces a scatter, a transpose and a gather per layer (and the
        transposes of the outputs); computed once per step."""
        if self._query_places is None:
            slot = self.slot if rows is None else self.slot[rows]
            prompt, sample = slot.div(self.samples, rounding_mode="floor"), slot % self.samples
            head = torch.arange(kv_heads, device=slot.device)[None, :, None]
            group = torch.arange(groups, device=slot.device)[None, None, :]
            places = ((prompt[:, None, None] * kv_heads + head) * self.samples + sample[:, None, None]) * groups + group
            self._query_places = places.reshape(-1)
        return self._query_places

    def query_rows(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's queries' prompts and cache rows (``rows``, or all in order); computed once per step."""
        if self._query_rows is None:
            cache_rows = torch.arange(len(self.slot), device=self.slot.device) if rows is None else rows
            self._query_rows = (self.slot[cache_rows].div(self.samples, rounding_mode="floor"), cache_rows)
        return self._query_rows

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Row ``i`` becomes row ``indices[i]`` (any order); prompts left without rows are dropped too."""
        slot = self.slot[indices]
        prompt = torch.div(slot, self.samples, rounding_mode="floor")
        kept = torch.unique(prompt)  # sorted
        prompts = None if len(kept) == self.prompt_mask.shape[0] else kept
        if prompts is not None:
            self.prompt_mask = self.prompt_mask[prompts]
            slot = torch.searchsorted(kept, prompt) * self.samples + slot % self.samples
        self.slot = slot
        self._query_places = self._query_rows = None
        for layer in self.layers:
            layer.select_rows(indices, prompts)


def shared_prefix_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask=None, scaling: float | None = None, shared_prefix=None, **kwargs):
    """Attention for one decoding step (see the module docstring); ``key``/``value`` are the
    generated tokens' keys/values returned by the cache (chunked where the layer's ``chunk`` is
    set), ``shared_prefix`` the cache itself."""
    cache: SharedPrefixCache = shared_prefix
    layer: SharedPrefixLayer = cache.layers[module.layer_idx]
    rows, heads, q_len, dim = query.shape
    if q_len != 1:
        raise ValueError("shared-prefix attention decodes one token per step")
    kv_heads = layer.prompt_keys.shape[1]
    groups = heads // kv_heads  # query heads h·groups … h·groups + groups − 1 share key/value head h
    scale = scaling if scaling is not None else dim ** -0.5
    q = query.reshape(rows, kv_heads, groups, dim)
    prompts, n = layer.prompt_keys.shape[0], cache.samples
    live = layer.rows  # the cache rows of the queries (None: all, in order)
    if cache.native is not None:  # the hand-written kernel (native.py): each row reads its prompt and its chunks
        prompt_of, cache_rows = cache.query_rows(live)
        out = cache.native.attention(q, prompt_of, cache_rows, layer.prompt_keys, layer.prompt_values,
                                     cache.prompt_mask.view(prompts, -1), key, value, layer._len, scale)
        return out.reshape(rows, q_len, heads, dim), None
    # The prompt part: all of a prompt's rows against its keys at once. Slots without a query
    # (finished or dropped rows) get zeros, as stale bytes can be slow denormals; with every slot
    # filled nothing needs zeroing.
    places = cache.query_places(live, kv_heads, groups)
    size = prompts * kv_heads * n * groups
    if cache.fused and not decode_attention.failed:  # the whole step as one compiled kernel (fused.py)
        rows_in = torch.arange(rows, device=q.device) if live is None else live
        if not layer.chunk:  # the per-row buffer is one chunk of every position
            key, value = key.unsqueeze(0), value.unsqueeze(0)
        bias = chunk_bias(layer._len, layer.chunk or layer._len, key.device)
        args = (q, places, layer.prompt_keys, layer.prompt_values, cache.prompt_mask, key, value, bias, rows_in)
        mark_decode_dynamic(*args, chunked=bool(layer.chunk))
        out = decode_attention(q, places, n, *args[2:], scale)
        return out.reshape(rows, q_len, heads, dim), None
    block = q.new_empty(size, dim) if len(places) == size else q.new_zeros(size, dim)
    block = block.index_copy_(0, places, q.reshape(-1, dim)).view(prompts, kv_heads, n * groups, dim)
    # (.to: a no-op, unless a failed compile left this step with the fused path's fp32 prompt cache)
    pk, pv, mask = (x.to(q.dtype) for x in (layer.prompt_keys, layer.prompt_values, cache.prompt_mask))
    out_p, lse_p = attention_with_lse(block, pk, pv, scale, mask)
    out_p = out_p.reshape(-1, dim).index_select(0, places).view(rows, kv_heads, groups, dim)
    lse_p = lse_p.reshape(-1).index_select(0, places).view(rows, kv_heads, groups)
    # The generated part: each row against its own tokens. The cache's rows are strided views of
    # one buffer; finished rows get zero queries (their outputs are dropped) rather than a copy of
    # every live row's keys and values.
    if layer.chunk:  # a failed compile left the fused path's chunked cache
        key, value = layer.generated()
    if live is None:
        out_g, lse_g = attention_with_lse(q, key, value, scale)
    else:
        q_all = q.new_zeros(key.shape[0], kv_heads, groups, dim).index_copy_(0, live, q)
        out_g, lse_g = attention_with_lse(q_all, key, value, scale)
        out_g, lse_g = out_g.index_select(0, live), lse_g.index_select(0, live)
    # The merge Σ_part exp(lse_part − lse) · out_part for two parts is a lerp by a sigmoid:
    # one pass over the outputs instead of five.
    weight = torch.sigmoid(lse_p - lse_g).unsqueeze(-1).to(out_g.dtype)
    out = torch.lerp(out_g, out_p, weight)
    return out.reshape(rows, q_len, heads, dim), None


AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)


@contextmanager
def decoding_with_shared_prefix(model):
    """Route the model's attention through :func:`shared_prefix_attention` for the decoding steps.

    Switched per generation call rather than at load time so that prefill, training and any other
    caller of the same model keep the attention implementation the user chose."""
    before = model.config._attn_implementation
    model.config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        model.config._attn_implementation = before

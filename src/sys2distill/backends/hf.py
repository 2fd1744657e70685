"""Hugging Face transformers backend: batched sampling with a shared prompt prefill.

Each batch of prompts is left-padded and prefilled once; the ``n`` samples of a prompt then
share its KV cache (``shared_prefix``: stored and read once per prompt, not once per sample),
the generated tokens' cache has room for every new token from the start (no per-token
concatenation), and finished rows leave the cache once a quarter of it has finished (in between
only the live rows go through the model with the shared prompt cache, and through the output
layer with a per-row cache): the live rows past the new end move into the finished
rows' places in the cache, so a compaction copies at most a quarter of the rows. On CPUs the
linear layers run on weights packed once (MKL's sgemm in fp32, oneDNN in bf16), projections of the
same input as one matmul. In bf16 each decoding step's attention is one kernel — hand-written for
AVX512-BF16 (``native.py``), else compiled by inductor (``fused.py``) — over a generated cache kept in
contiguous chunks; RMSNorm, SiLU·up and the rotary embedding run on ``native.py``'s kernels too, and
the sampling head reads the logits in one compiled pass. Batches are bounded in rows and in KV cache
positions. Measurements: ``bench/README.md`` (sampling throughput, bf16 decoding).
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from contextlib import contextmanager, nullcontext

import torch

from sys2distill.backends import register_backend
from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.backends.fused import Fused, mark_dynamic
from sys2distill.backends.native import NativeKernels, cpu_flags, native_kernels
from sys2distill.backends.shared_prefix import KV_CHUNK, SharedPrefixCache, decoding_with_shared_prefix, reserved_cache
from sys2distill.errors import UserError
from sys2distill.records import Completion

# CPU feature flags that compute a dtype natively: /proc/cpuinfo "flags" on x86 (AVX512-BF16, AMX),
# "Features" on Arm. Without them torch emulates the dtype through fp32 at a fraction of fp32's speed.
NATIVE_CPU_FLAGS = {"bfloat16": {"avx512_bf16", "amx_bf16", "bf16"}, "float16": {"avx512_fp16", "amx_fp16", "fphp"}}
# Default (rows, KV cache positions) per batch (HFBackend.batch_limits): several bf16 samples per prompt, and the rest.
WIDE_BATCH, BATCH = (512, 131072), (256, 65536)
# Prompt tokens that every prompt of a batch must share before that prefix is prefilled once for all of them
# (HFBackend._prefill): a few-shot block or a long instruction, not a chat template's opening lines.
COMMON_PREFIX_MIN = 64


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype to compute in: ``auto`` is bfloat16 where the device computes it natively (a CUDA GPU
    with bf16, a CPU with AVX512-BF16 or AMX) and float32 elsewhere. An explicit half-precision dtype
    the CPU has no native support for is a ``UserError``.

    bf16 halves the weights' and KV cache's memory traffic; on CPUs without bf16 units it is slower
    than fp32 (bench/README.md). Whether it changes accuracy: bench/README.md, "bf16 vs fp32".
    """
    if device.startswith("cuda"):
        # A Ray driver may have no GPU of its own: its workers' GPUs are assumed to be recent (bf16).
        bf16 = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
        if dtype == "bfloat16" and not bf16:
            raise UserError(f"this GPU ({torch.cuda.get_device_name()}) has no bfloat16: "
                            "set backend.dtype=float16 or float32")
        return ("bfloat16" if bf16 else "float32") if dtype == "auto" else dtype
    if device != "cpu":  # other accelerators: torch decides what runs
        return "float32" if dtype == "auto" else dtype
    flags = cpu_flags()
    if dtype == "auto":
        return "bfloat16" if flags and flags & NATIVE_CPU_FLAGS["bfloat16"] else "float32"
    if dtype in NATIVE_CPU_FLAGS and flags is not None and not flags & NATIVE_CPU_FLAGS[dtype]:
        need = " or ".join(sorted(NATIVE_CPU_FLAGS[dtype]))
        raise UserError(f"backend.dtype={dtype}: this CPU has no native {dtype} ({need}), so it would run "
                        "emulated, slower than float32: set backend.dtype=auto or float32")
    return dtype


@contextmanager
def scoring_rows(model):
    """Yield ``select(positions)``: until called again, the output layer scores only those batch
    positions (``None``: all). With a per-row cache (one sample per prompt, or a model without
    shared-prefix attention) finished rows stay in the batch until a compaction, and their
    logits — a 49k-wide row each, a fifth of the model's FLOPs — would be computed and then
    dropped by a 50 MB gather at every step."""
    head = model.get_output_embeddings()
    chosen: list[torch.Tensor | None] = [None]

    def keep_rows(module, args):
        return None if chosen[0] is None else (args[0][chosen[0]], *args[1:])

    def select(positions: list[int] | None) -> None:
        chosen[0] = None if positions is None else torch.tensor(positions, device=model.device)

    handle = head.register_forward_pre_hook(keep_rows) if head is not None else None
    try:
        yield select if handle is not None else (lambda positions: None)
    finally:
        if handle is not None:
            handle.remove()


def mkl_packing_available(model) -> bool:
    """MKL's packed sgemm: x86 CPU builds of torch, fp32 weights."""
    if not (torch.backends.mkl.is_available() and model.device.type == "cpu" and model.dtype == torch.float32):
        return False
    try:
        torch.ops.mkl._mkl_linear, torch.ops.mkl._mkl_reorder_linear_weight
    except (AttributeError, RuntimeError):
        return False
    return True


def mkldnn_packing_available(model) -> bool:
    """oneDNN's packed bf16 matmul: CPU builds of torch with oneDNN, bf16 weights, a CPU with bf16 units."""
    if not (torch.backends.mkldnn.is_available() and model.device.type == "cpu" and model.dtype == torch.bfloat16):
        return False
    try:
        torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def packing_available(model) -> bool:
    return mkl_packing_available(model) or mkldnn_packing_available(model)


# Sibling projections that read the same input: one matmul of their stacked weights instead of
# two or three (Llama/Qwen2/Mistral attention and gated MLPs).
FUSED_PROJECTIONS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def fusable_groups(model) -> list[list[torch.nn.Linear]]:
    """Groups of plain ``nn.Linear`` siblings named in :data:`FUSED_PROJECTIONS`, with the same input
    size and either all or none with a bias."""
    groups = []
    for parent in model.modules():
        for names in FUSED_PROJECTIONS:
            members = [getattr(parent, name, None) for name in names]
            if all(type(m) is torch.nn.Linear for m in members) \
                    and len({(m.in_features, m.bias is None) for m in members}) == 1:
                groups.append(members)
    return groups


@contextmanager
def packed_linear_weights(model, packed: dict, rows: int, fuse: bool = True):
    """Run the model's ``nn.Linear`` layers on weights pre-packed for MKL's sgemm (fp32) or oneDNN (bf16).

    A plain ``linear`` call re-packs its weight matrix into the library's blocked layout on every
    call — for a decoding step, every weight of the model, every step. Packing once is what inductor
    does for frozen linears on CPU (``mkl._mkl_linear`` in fp32, ``mkldnn._linear_pointwise`` in
    bf16); fp32, measured on the model's layer shapes at 256 rows: 258–277 → 281–328 GFLOP/s; both
    give the same results bit for bit (tested: same tokens). ``packed`` caches the packed weights
    across calls (≈ the model's size again); a weight changed in place, e.g. by training, is packed again.

    With ``fuse``, projections that read the same input (query/key/value, gate/up: :func:`fusable_groups`) are one
    matmul of their stacked weights, as vLLM's ``QKVParallelLinear`` and ``MergedColumnParallelLinear``
    do: the first member called computes all of them and each other member, called next with the
    same input tensor, takes its columns of the result (with another input it computes its own).
    Narrow key/value projections (576 → 192 for SmolLM2) use two threads poorly on their own.

    ``rows`` is only a sizing hint: the packed layout of a weight does not depend on it (same
    buffer size for 1 to 512 rows, and the same results as packing for the actual row count — tested),
    so every call runs packed with its own row count. (``_mkl_linear`` falls back to an unpacked
    ``linear`` when told a row count other than the actual one — the output layer, which scores only
    the live rows, always did; bench/README.md, sampling.py's notes.)
    """
    patched = _pack_linears(model, packed, rows, fuse)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


class _PackedMatmul:
    """Packed weights of one model for MKL (fp32) or oneDNN (bf16): ``pack`` once, ``matmul`` every call."""

    def __init__(self, model, packed: dict, rows: int):
        self.mkl, self.packed, self.rows = model.dtype == torch.float32, packed, rows
        self.reorder = torch.ops.mkl._mkl_reorder_linear_weight if self.mkl else torch.ops.mkldnn._reorder_linear_weight

    def pack(self, key_modules, weight: torch.Tensor):
        """Packed blocks of ``weight`` (cached under the modules, repacked when one of their weights changes)."""
        key = tuple((m.weight.data_ptr(), m.weight._version) for m in key_modules)
        if self.packed.get(key_modules, (None,))[0] != key:  # MKL keeps the plain weight for other row counts
            self.packed[key_modules] = (key, weight if self.mkl else None, self.reorder(weight, self.rows))
        return self.packed[key_modules][1:]

    def matmul(self, x: torch.Tensor, weight: torch.Tensor, blocks: torch.Tensor, bias) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()  # read as a dense matrix
        if self.mkl:
            y = torch.ops.mkl._mkl_linear(flat, blocks, weight, bias, flat.shape[0])
        else:
            y = torch.ops.mkldnn._linear_pointwise(flat, blocks, bias, "none", [], "")
        return y.view(*x.shape[:-1], y.shape[-1])


def _pack_linears(model, packed: dict, rows: int, fuse: bool) -> list[torch.nn.Module]:
    """Point every ``nn.Linear`` of ``model`` at packed weights (each fusable group at one stacked matmul);
    returns the patched modules."""
    ops, patched = _PackedMatmul(model, packed, rows), []
    grouped = fusable_groups(model) if fuse else []
    for group in grouped:
        weight, blocks = ops.pack(tuple(group), torch.cat([m.weight.detach() for m in group]))
        bias = None if group[0].bias is None else torch.cat([m.bias.detach() for m in group])
        cuts = torch.tensor([m.out_features for m in group]).cumsum(0).tolist()
        spans = list(zip([0, *cuts[:-1]], cuts))
        last: dict = {"input": None, "outputs": {}}  # the group's latest input and the outputs not yet taken

        for member in group:
            def forward(x, member=member, group=group, spans=spans, weight=weight, blocks=blocks, bias=bias, last=last):
                if last["input"] is not x or member not in last["outputs"]:
                    y = ops.matmul(x, weight, blocks, bias)
                    last["input"] = x
                    last["outputs"] = {m: y[..., a:b] for m, (a, b) in zip(group, spans)}
                return last["outputs"].pop(member)

            member.forward = forward
            patched.append(member)
    fused = {m for group in grouped for m in group}
    for module in model.modules():
        if type(module) is not torch.nn.Linear or module in fused:
            continue
        weight, blocks = ops.pack((module,), module.weight.detach())
        bias = None if module.bias is None else module.bias.detach()
        module.forward = lambda x, weight=weight, blocks=blocks, bias=bias: ops.matmul(x, weight, blocks, bias)
        patched.append(module)
    return patched


@contextmanager
def native_elementwise(model, kernels: NativeKernels):
    """Run the model's RMSNorm layers, gated SiLU MLPs and rotary embedding on ``native.py``'s bf16
    kernels: one pass each instead of the eager ops' three to eight (each dispatched, each writing its
    output; in a decoding step at a few hundred rows their dispatch is most of their cost).

    A module is switched only where the kernel reproduces its own output on a probe input to within
    bf16 rounding (the kernels keep the eager ops' roundings; only the order of the variance's sum and
    SiLU's formula differ): an RMSNorm of another formula (Gemma's ``1 + weight``) or an MLP with
    another activation keeps its forward. The rotary embedding is a function of the modeling module
    (``apply_rotary_pos_emb``, looked up as attention runs), replaced there while this lasts — for every
    model of that family in the process — where it gives the function's outputs bit for bit. Inputs
    other than bf16 on CPU take the original code.
    """
    generator = torch.Generator(device="cpu").manual_seed(0)

    def probe(*shape):
        return torch.randn(*shape, generator=generator).to(torch.bfloat16)

    patched = _switch_modules(model, kernels, probe)
    functions = _switch_rotary(model, kernels, probe)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
        for namespace, original in functions:
            namespace.apply_rotary_pos_emb = original


def _switch_modules(model, kernels: NativeKernels, probe) -> list[torch.nn.Module]:
    """Point the RMSNorm and gated SiLU MLP modules whose output the kernels reproduce at them; returns them."""
    patched = []

    def on_cpu_bf16(module, native):
        """``module``'s forward through ``native`` for bf16 CPU inputs, its own for the rest."""
        def forward(x):
            return native(x) if x.dtype == torch.bfloat16 and x.device.type == "cpu" else type(module).forward(module, x)
        return forward

    for module in model.modules():
        weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 1 and isinstance(eps, float) \
                and weight.dtype == torch.bfloat16 and weight.device.type == "cpu":
            forward = on_cpu_bf16(module, lambda x, m=module: kernels.rms_norm(x, m.weight, m.variance_epsilon))
            size = weight.shape[0]
        elif all(type(getattr(module, name, None)) is torch.nn.Linear for name in ("gate_proj", "up_proj", "down_proj")) \
                and module.gate_proj.weight.dtype == torch.bfloat16 and module.gate_proj.weight.device.type == "cpu":
            forward = on_cpu_bf16(module, lambda x, m=module: m.down_proj(kernels.silu_mul(m.gate_proj(x), m.up_proj(x))))
            size = module.gate_proj.in_features
        else:
            continue
        x = probe(3, size)
        with torch.inference_mode():
            same = torch.allclose(forward(x).float(), module(x).float(), rtol=2 ** -6, atol=2 ** -6)
        if same:
            module.forward = forward
            patched.append(module)
    return patched


def _switch_rotary(model, kernels: NativeKernels, probe) -> list[tuple]:
    """Replace ``apply_rotary_pos_emb`` in the model's modeling modules where the kernel gives its outputs bit for
    bit; returns (module, original) pairs to restore."""
    functions = []
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    modeling = {sys.modules.get(type(m).__module__) for m in model.modules()}
    for namespace in modeling:
        original = getattr(namespace, "apply_rotary_pos_emb", None)
        if not callable(original) or head_dim % 32:
            continue

        def rotary(q, k, cos, sin, unsqueeze_dim=1, original=original):
            rows = (q.shape[0], q.shape[2], q.shape[3]) if q.dim() == 4 else None
            if unsqueeze_dim == 1 and k.dim() == 4 and cos.shape == sin.shape == rows == (k.shape[0], *k.shape[2:]) \
                    and cos.stride() == sin.stride() and all(t.dtype == torch.bfloat16 and t.device.type == "cpu"
                                                             and t.stride(-1) == 1 for t in (q, k, cos, sin)):
                return kernels.rotary(q, cos, sin), kernels.rotary(k, cos, sin)
            return original(q, k, cos, sin, unsqueeze_dim)
        # Queries and keys transposed out of [batch, seq, heads, dim], as attention layers make them.
        q, k = probe(2, 3, 4, head_dim).transpose(1, 2), probe(2, 3, 1, head_dim).transpose(1, 2)
        cos, sin = probe(2, 3, head_dim), probe(2, 3, head_dim)
        if all(torch.equal(a, b) for a, b in zip(rotary(q, k, cos, sin), original(q, k, cos, sin))):
            namespace.apply_rotary_pos_emb = rotary
            functions.append((namespace, original))
    return functions


def common_prefix_length(ids: list[list[int]]) -> int:
    """How many leading tokens all ``ids`` share, leaving each at least one token of its own (the prefill's
    last position must be the prompt's own)."""
    first, shortest = ids[0], min(map(len, ids))
    length = 0
    while length < shortest - 1 and all(x[length] == first[length] for x in ids):
        length += 1
    return length


def compacted_order(live: list[int]) -> list[int]:
    """The batch positions to keep (``live``, ascending), in their new order: a live row already
    among the first ``len(live)`` positions stays where it is, and the live rows past them move
    into the finished rows' places — the fewest row copies in the cache (``ReservedLayer``)."""
    count = len(live)
    staying = {k for k in live if k < count}
    movers = iter(k for k in live if k >= count)
    return [k if k in staying else next(movers) for k in range(count)]


def sample_seed(seed: int, prompt: str, j: int) -> int:
    """Seed of sample ``j`` of ``prompt``: independent of batch size and order."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{j}\0{prompt}".encode()).digest()[:8], "little") >> 1


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero out the tail outside the smallest set of tokens whose mass reaches ``top_p``."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keep the token that crosses top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def inverse_cdf_sample(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row, each row drawing its uniform number from its own generator.

    ``torch.multinomial`` takes one generator per call, so per-row seeds would mean one call per
    row, each over the whole vocabulary; one batched cumsum + searchsorted serves every row.
    """
    cdf = probs.cumsum(-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(cdf) * cdf[:, -1]
    # right=True: the first token whose cumulative mass exceeds u, never a zero-mass token.
    return torch.searchsorted(cdf, u.unsqueeze(1), right=True).squeeze(1).clamp(max=probs.shape[-1] - 1)


def top_k_by_blocks(x: torch.Tensor, k: int, block: int = 64,
                    maxima: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(k, dim=-1)`` for a wide matrix: the same values (indices may differ among ties).

    The ``k`` largest entries of a row lie in the ``k`` blocks of ``block`` entries with the largest
    maxima (a block holding one of them has a maximum at least as large, and fewer than ``k`` other
    blocks can beat it), so one max pass narrows the vocabulary to ``k × block`` candidates before
    the real ``topk`` (bench/README.md, sampling.py's notes). ``maxima``: the full blocks' maxima
    of ``x`` or of any increasing function of it, when already computed (:func:`sample_logits`).
    """
    rows, width = x.shape
    full = width // block
    if full <= k:
        return x.topk(k, dim=-1)
    blocks = x[:, :full * block].view(rows, full, block)
    best = (blocks.amax(-1) if maxima is None else maxima).topk(k, dim=-1).indices  # [rows, k]
    candidates = blocks.gather(1, best.unsqueeze(-1).expand(-1, -1, block)).view(rows, k * block)
    ids = (best.unsqueeze(-1) * block + torch.arange(block, device=x.device)).view(rows, k * block)
    if full * block < width:  # the last, partial block is always a candidate
        candidates = torch.cat([candidates, x[:, full * block:]], 1)
        ids = torch.cat([ids, torch.arange(full * block, width, device=x.device).expand(rows, -1)], 1)
    values, pos = candidates.topk(k, dim=-1)
    return values, ids.gather(1, pos)


def draw_in_nucleus(vals: torch.Tensor, idx: torch.Tensor, top_p: float, generators: list[torch.Generator],
                    wider) -> torch.Tensor:
    """One token per row from its ``k`` most likely tokens ``idx`` with probabilities ``vals`` (descending):
    the draw of ``inverse_cdf_sample(top_p_filter(probs, top_p), generators)`` wherever the nucleus lies
    inside them. ``wider(rows, generators)`` draws for the other rows (a boolean row mask)."""
    inside = vals.cumsum(-1) - vals <= top_p  # the nucleus: a prefix of the sorted tokens
    fits = ~inside[:, -1]
    out = torch.empty(vals.shape[0], dtype=torch.long, device=vals.device)
    rows = fits.nonzero().squeeze(1).tolist()
    if rows:
        ids, order = idx[fits].sort(dim=-1)  # back to vocabulary order, as the full path's cdf
        kept = vals[fits].masked_fill(~inside[fits], 0.0).gather(-1, order)
        pos = inverse_cdf_sample(kept, [generators[r] for r in rows])
        out[fits] = ids.gather(-1, pos.unsqueeze(1)).squeeze(1)
    rest = (~fits).nonzero().squeeze(1).tolist()
    if rest:
        out[~fits] = wider(~fits, [generators[r] for r in rest])
    return out


def sample_top_p(probs: torch.Tensor, top_p: float, generators: list[torch.Generator], k: int = 64,
                 max_k: int = 512) -> torch.Tensor:
    """``inverse_cdf_sample(top_p_filter(probs, top_p), generators)``, computed on the top ``k`` tokens.

    Sorting the whole 49k vocabulary for every row at every step cost about as much as the model's
    forward pass. The nucleus almost always lies inside the top ``k``:
    there the same kept set is laid out in vocabulary order, so the same uniform number picks the
    same token; rows whose nucleus may reach past ``k`` retry with 8 × ``k`` tokens, and past
    ``max_k`` take the full sort. (``topk`` itself grows with ``k``. Past a few thousand tokens the partial cumulative sums round differently
    from the full sort's — a 16k-token nucleus drew a neighbouring token — hence ``max_k``.)
    """
    if top_p >= 1.0:
        return inverse_cdf_sample(probs, generators)
    if k > max_k or k >= probs.shape[-1]:
        return inverse_cdf_sample(top_p_filter(probs, top_p), generators)
    vals, idx = top_k_by_blocks(probs, k)
    return draw_in_nucleus(vals, idx, top_p, generators,
                           lambda rows, gens: sample_top_p(probs[rows], top_p, gens, k=8 * k, max_k=max_k))


def _logit_summary(logits: torch.Tensor, temperature: float, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's log-sum-exp of ``logits / temperature`` (in fp32) and the maxima of its full blocks."""
    z = logits.float() / temperature
    full = z.shape[-1] // block
    return torch.logsumexp(z, -1), z[:, :full * block].unflatten(-1, (full, block)).amax(-1)


logit_summary = Fused(_logit_summary)


def sample_logits(logits: torch.Tensor, temperature: float, top_p: float, generators: list[torch.Generator],
                  k: int = 16, block: int = 64, max_k: int = 64,
                  summary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``sample_top_p(softmax(logits.float() / temperature), top_p, generators)`` without the softmax.

    The softmax writes a probability for every row and vocabulary entry, and the top-``k`` search
    reads them all again. Here one compiled pass over the logits (:func:`logit_summary`) gives each
    row's log-sum-exp and block maxima; the top ``k`` tokens come from the best blocks (as in
    :func:`top_k_by_blocks`) and only their probabilities are computed, ``exp(z − lse)`` — the
    softmax's values up to rounding, so a draw can differ from the softmax path's only where its
    uniform number falls within rounding of a token boundary, or where the nucleus ends inside a run
    of equal probabilities (common with bf16 logits; which of them it keeps is arbitrary either way).
    Rows whose nucleus reaches past the top ``k`` try again with ``4 × k`` tokens (the same summary) up
    to ``max_k``, then take the softmax path: most nuclei are a few tokens, and the search for 16 costs
    a fraction of the search for 64 (bench/README.md, "bf16 decoding").
    """
    rows, width = logits.shape
    if top_p >= 1.0 or width // block <= k:
        return sample_top_p(torch.softmax(logits.float() / temperature, -1), top_p, generators, k=k)
    if summary is None:
        mark_dynamic(logits, 0)  # rows: every batch size and finished-row count from the first call
        summary = logit_summary(logits, temperature, block)
    lse, maxima = summary
    top, idx = top_k_by_blocks(logits, k, block, maxima)

    def wider(sel: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        if 4 * k <= max_k:
            return sample_logits(logits[sel], temperature, top_p, gens, 4 * k, block, max_k, (lse[sel], maxima[sel]))
        return sample_top_p(torch.softmax(logits[sel].float() / temperature, -1), top_p, gens, k=8 * k)

    return draw_in_nucleus((top.float() / temperature - lse.unsqueeze(1)).exp(), idx, top_p, generators, wider)


@register_backend("hf")
class HFBackend:
    """Generate with a transformers causal LM on CPU or GPU.

    ``batch_size`` counts sequences (prompts × samples) decoded together, ``max_batch_tokens`` bounds
    their KV cache positions; ``None``: :meth:`batch_limits`. ``dtype`` ``auto`` is resolved by
    :func:`resolve_dtype`; ``self.dtype`` is the dtype the model computes in.
    """

    def __init__(self, model: str = "embedded", dtype: str = "auto", device: str = "cpu",
                 batch_size: int | None = None, max_batch_tokens: int | None = None, loaded=None):
        from sys2distill.models import load_model_and_tokenizer, model_identity

        self.model_id = model_identity(model)
        if loaded is None:  # resolved before loading: a dtype the CPU lacks fails at once
            loaded = load_model_and_tokenizer(model, resolve_dtype(dtype, device), device)
        self.model, self.tokenizer = loaded
        self.dtype = str(self.model.dtype).removeprefix("torch.")  # what it computes in (an in-process model's own)
        # Finished rows stay in the batch until they are a quarter of it: compacting copies the cache,
        # and compacting at every finished row was no faster (bench/README.md, sampling.py's notes).
        self.max_finished_share = 0.25
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        # transformers 5 renamed the forward argument ``past_key_values`` to ``cache``.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        # Prefill needs the last position's logits only: [batch, prompt_len, vocab] for a batch of
        # 64 two-thousand-token judge prompts would be 25 GB of fp32 (and a fifth of the FLOPs).
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        # On a GPU the per-row cache was faster: the shared-prefix attention is plain torch ops
        # where the per-row path gets the fused SDPA kernel (bench/README.md, cuda_check.py).
        self.shared_prefix = SharedPrefixCache.supports(self.model) and self.model.device.type == "cpu"
        self.pack_weights = packing_available(self.model)
        # bf16 on CPU: the flash kernel's per-head set-up dominated its small decoding problems
        # (fused.py). fp32 keeps its measured path and its samples.
        self.fused = self.model.device.type == "cpu" and self.model.dtype == torch.bfloat16
        # Also where measured (bf16 on CPU, bench/README.md), on the fused path: the sampling head reads the
        # logits in one compiled pass (sample_logits); the packed query/key/value and gate/up projections are
        # one matmul each (the same tokens; in fp32 MKL would also keep a stacked copy of those weights); the
        # attention, RMSNorm, SiLU·up and rotary embedding run on the hand-written kernels where they build
        # (native.py; else fused.py's attention and the eager ops); the generated cache is kept in chunks read
        # front to back (shared_prefix.py; 0: per-row buffers). The three switches below follow ``fused``: they
        # are apart only so the equality tests and bench/decode_ab.py can set one kernel against the plain path.
        self.fuse_projections = self.native_attention = self.native_elementwise = self.fused
        self.logits_top_k = 16  # the sampling head's first top-k level (sample_logits)
        self.kv_chunk = KV_CHUNK
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens  # None: batch_limits
        self._packed: dict = {}  # linear layers → their packed weights, reused across calls

    def batch_limits(self, samples: int) -> tuple[int, int]:
        """Rows (prompts × samples) per batch and the bound on their KV cache positions: ``batch_size``
        and ``max_batch_tokens`` where set, else 512 rows and 131,072 positions when the fused bf16 path
        samples several continuations per prompt, 256 and 65,536 otherwise.

        A step costs a fixed part (Python, op dispatch, per-layer calls) besides its rows', so on the
        fused path 512 rows decode faster than 256, and 131,072 bf16 positions take the memory of 65,536
        fp32 ones. With one sample per prompt every row is a prompt to prefill, and prefill's activations
        grow with its tokens: 512 rows there about doubled peak memory; in fp32 256 and 512 rows decoded
        level (bench/README.md, "bf16 decoding" and "sampling.py").
        """
        rows, positions = WIDE_BATCH if self.fused and samples > 1 else BATCH
        return self.batch_size or rows, self.max_batch_tokens or positions

    def render(self, messages: Messages) -> str:
        """The exact prompt text the model sees (the tokenizer's chat template)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        texts = [self.render(m) for m in prompts]
        # Greedy samples are identical: decode once and copy.
        n = 1 if params.temperature == 0 else params.n
        ids = self.tokenizer(texts, add_special_tokens=False).input_ids  # each prompt encoded once
        out: list[list[Completion]] = [[] for _ in texts]
        # A prompt holds its own positions of KV cache once (n times without a shared prefix) and
        # n rows of up to max_tokens generated positions.
        rows, max_tokens = self.batch_limits(n)
        batches = self._batches([len(x) for x in ids], max(1, rows // n),
                                max_tokens=max_tokens, new_tokens=n * params.max_tokens,
                                prompt_copies=1 if self.shared_prefix and n > 1 else n)
        packing = nullcontext() if not self.pack_weights else \
            packed_linear_weights(self.model, self._packed, rows, self.fuse_projections)
        kernels = native_kernels() if self.fused and self.native_elementwise else None
        with packing, native_elementwise(self.model, kernels) if kernels else nullcontext():
            for idx in batches:
                batch = self._generate_batch([texts[i] for i in idx], [ids[i] for i in idx], n, params)
                for i, comps in zip(idx, batch):
                    out[i] = comps if n == params.n else comps * params.n
        return out

    @staticmethod
    def _batches(lengths: list[int], per_batch: int, max_padding: float = 0.25,
                 max_tokens: int | None = None, new_tokens: int = 0, prompt_copies: int = 1) -> list[list[int]]:
        """Prompt indices in batches of at most ``per_batch``, sorted by token length.

        A batch is also cut where left padding would exceed ``max_padding`` of its prompt tokens:
        a batch mixing 200- and 2,000-token prompts (judge inputs) spends most of its prefill on
        padding, while prompts of similar length (most tasks) stay in full batches. ``max_tokens``
        bounds prompts × (``prompt_copies`` × padded prompt length + ``new_tokens``), the positions
        the KV cache can reach, so a batch of long prompts holds fewer rows than a batch of short ones.
        """
        batches: list[list[int]] = []
        real = 0  # prompt tokens in the last batch
        for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
            # Ascending order: the newcomer is the longest, so it sets the padded width.
            grown = len(batches[-1]) + 1 if batches else 1
            if batches and grown <= per_batch and grown * lengths[i] <= (1 + max_padding) * (real + lengths[i]) \
                    and (max_tokens is None or grown * (prompt_copies * lengths[i] + new_tokens) <= max_tokens):
                batches[-1].append(i)
                real += lengths[i]
            else:
                batches.append([i])
                real = lengths[i]
        return batches

    def _prefill(self, ids: list[list[int]], cache) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the prompts through the model into ``cache``: (last-position logits, the prompts' 2D attention
        mask, their position ids).

        Prompts are left-padded to one length. Where every prompt of the batch opens with the same
        ``COMMON_PREFIX_MIN`` or more tokens (few-shot exemplars, a long instruction), that prefix is
        prefilled once and its keys and values serve every row; only the rest of each prompt is
        prefilled per row, left-padded after the prefix (vLLM's prefix caching, within one batch).
        Same attention, other float summation order: outputs agree to rounding (tests/test_hf_backend.py).
        """
        model, device = self.model, self.model.device
        shared = common_prefix_length(ids) if len(ids) > 1 else 0
        if shared < COMMON_PREFIX_MIN:
            enc = self.tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
            tokens, mask = enc.input_ids.to(device), enc.attention_mask.to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True,
                        **{self._cache_arg: cache}, **self._last_logits_only)
            return out.logits, mask, positions
        from transformers import DynamicCache

        prompt_cache = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([ids[0][:shared]], device=device), use_cache=True,
              **{self._cache_arg: prompt_cache}, **self._last_logits_only)
        for layer in prompt_cache.layers:  # one copy of the prefix, seen by every row
            layer.keys, layer.values = (x.expand(len(ids), *x.shape[1:]) for x in (layer.keys, layer.values))
        enc = self.tokenizer.pad({"input_ids": [x[shared:] for x in ids]}, padding=True, padding_side="left",
                                 return_tensors="pt")
        mask = torch.cat([enc.attention_mask.new_ones(len(ids), shared), enc.attention_mask], dim=1).to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=enc.input_ids.to(device), attention_mask=mask, position_ids=positions[:, shared:],
                    use_cache=True, **{self._cache_arg: prompt_cache}, **self._last_logits_only)
        for layer, prompt in zip(cache.layers, prompt_cache.layers):  # the whole prompts, as one prefill stores them
            layer.update(prompt.keys, prompt.values)
        return out.logits, mask, positions

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], ids: list[list[int]], n: int, params: SamplingParams) -> list[list[Completion]]:
        """Decode ``n`` samples for each prompt; ``texts`` (the rendered prompts) seed the samples."""
        # With one sample per prompt there is nothing to share, and splitting attention in two only costs.
        layout = (SharedPrefixLayout if self.shared_prefix and n > 1 else PerRowLayout)(self, params.max_tokens)
        logits, mask, positions = self._prefill(ids, layout.cache)
        prompt_lens = mask.sum(-1).tolist()
        layout.start(n, mask, logits.dtype)
        rows = Rows([torch.Generator().manual_seed(sample_seed(params.seed, texts[r // n], params.first_sample + r % n))
                     for r in range(len(texts) * n)])
        self._decode(layout, rows, logits[:, -1, :].repeat_interleave(n, 0),  # the model's dtype: sampling reads fp32
                     positions[:, -1:].repeat_interleave(n, 0) + 1, params)
        results = []
        for r in range(len(rows.generated)):
            text = rows.texts[r]
            if text is None:
                text = self.tokenizer.decode(rows.generated[r], skip_special_tokens=True)
            results.append(Completion(text=text.strip(), prompt_tokens=prompt_lens[r // n],
                                      completion_tokens=len(rows.generated[r]), finish_reason=rows.finish[r],
                                      logprob=rows.logprob[r] if params.logprobs else None))
        return [results[i * n:(i + 1) * n] for i in range(len(texts))]

    def _decode(self, layout, rows: Rows, logits: torch.Tensor, next_pos: torch.Tensor, params: SamplingParams) -> None:
        """Generate every row's tokens until each stops or ``params.max_tokens``; ``rows`` keeps what they wrote."""
        model = self.model
        with layout.decoding(), scoring_rows(model) as score_rows:
            for _ in range(params.max_tokens):
                if len(logits) > len(rows.live):  # the prefill's logits, or a model without an output layer to hook
                    logits = logits[rows.live]
                next_ids = self._next_tokens(logits, rows, params)
                if params.logprobs:  # the model's own probabilities (temperature 1, no top-p) of the chosen tokens
                    chosen = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(next_ids)[:, None])[:, 0]
                    for k, value in zip(rows.live, chosen.tolist()):
                        rows.logprob[rows.in_batch[k]] += value
                step = self._append(rows, next_ids, params)
                if not rows.live:
                    break
                # A finished row costs a row of compute at every later step; dropping it moves a
                # live row (its filled KV positions) into its place.
                if len(rows.in_batch) - len(rows.live) > self.max_finished_share * len(rows.in_batch):
                    live = compacted_order(rows.live)
                    sel = torch.tensor(live, device=model.device)
                    layout.select(sel)
                    next_pos = next_pos[sel]
                    rows.in_batch, step = [rows.in_batch[k] for k in live], [step[k] for k in live]
                    rows.live = list(range(len(rows.in_batch)))
                subset = rows.live if len(rows.live) < len(rows.in_batch) else None  # None: every row, in order
                inputs, pos, attend = layout.step(step, rows.live, subset, next_pos, score_rows)
                inputs = torch.tensor(inputs, device=model.device).unsqueeze(1)
                logits = model(input_ids=inputs, position_ids=pos, use_cache=True, **attend,
                               **{self._cache_arg: layout.cache}).logits[:, -1, :]
                next_pos = next_pos + 1

    def _next_tokens(self, logits: torch.Tensor, rows: Rows, params: SamplingParams) -> list[int]:
        """The live rows' next tokens: greedy, or drawn with each row's own generator."""
        if params.temperature == 0:
            return logits.argmax(-1).tolist()
        row_gens = [rows.generators[rows.in_batch[k]] for k in rows.live]
        if self.fused:  # the sampling head reads the logits in one compiled pass
            return sample_logits(logits, params.temperature, params.top_p, row_gens, k=self.logits_top_k).tolist()
        probs = torch.softmax(logits.float() / params.temperature, -1)
        return sample_top_p(probs, params.top_p, row_gens).tolist()

    def _append(self, rows: Rows, next_ids: list[int], params: SamplingParams) -> list[int]:
        """Add each live row's token; rows that end (EOS, a stop string) leave ``rows.live``. Returns the step's
        input per batch position (a finished row is fed any token: its output is never read)."""
        step, still = [0] * len(rows.in_batch), []
        for k, t in zip(rows.live, next_ids):
            r = rows.in_batch[k]
            rows.generated[r].append(t)
            step[k] = t
            if t in self.eos_ids:
                rows.finish[r] = "stop"
                continue
            if params.stop:
                text = self.tokenizer.decode(rows.generated[r], skip_special_tokens=True)
                cut = min((text.find(s) for s in params.stop if s in text), default=-1)
                if cut >= 0:
                    rows.texts[r], rows.finish[r] = text[:cut], "stop"
                    continue
            still.append(k)
        rows.live = still
        return step


class Rows:
    """The decoding rows of a batch (prompts × samples): what each wrote and where it sits in the batch."""

    def __init__(self, generators: list[torch.Generator]):
        self.generators = generators
        self.generated: list[list[int]] = [[] for _ in generators]
        self.texts: list[str | None] = [None] * len(generators)  # set where a stop string cut the text
        self.finish = ["length"] * len(generators)
        self.logprob = [0.0] * len(generators)  # summed log-probs of each row's tokens (SamplingParams.logprobs)
        self.in_batch = list(range(len(generators)))  # row id at each batch position, finished rows included
        self.live = list(range(len(generators)))  # batch positions still decoding


class SharedPrefixLayout:
    """The shared-prefix layout: each prompt's KV cache once, read by its ``n`` rows (``shared_prefix``). Rows are
    aligned after the prompt: no mask, the prompt mask lives in the cache; only live rows go through the model."""

    def __init__(self, backend: HFBackend, max_tokens: int):
        self.model = backend.model
        self.cache = SharedPrefixCache(backend.model.config, max_tokens)
        self.cache.fused, self.cache.kv_chunk = backend.fused, backend.kv_chunk
        self.cache.native = native_kernels() if backend.fused and backend.native_attention else None

    def decoding(self):
        return decoding_with_shared_prefix(self.model)

    def start(self, n: int, mask: torch.Tensor, dtype: torch.dtype) -> None:
        self.cache.start_sampling(n, mask, dtype)

    def select(self, sel: torch.Tensor) -> None:
        self.cache.batch_select_indices(sel)

    def step(self, step: list[int], live: list[int], subset: list[int] | None, next_pos: torch.Tensor, score_rows):
        """(input tokens, positions, attention kwargs) of the next step."""
        self.cache.decode_rows(None if subset is None else torch.tensor(subset, device=self.model.device))
        return [step[k] for k in live], next_pos if subset is None else next_pos[subset], {"shared_prefix": self.cache}


class PerRowLayout:
    """The per-row layout: each row its own KV cache (one sample per prompt, or models without shared-prefix
    attention). Finished rows go through the model too, with a growing attention mask; the output layer skips them."""

    def __init__(self, backend: HFBackend, max_tokens: int):
        self.cache = reserved_cache(backend.model.config, max_tokens)
        self.mask = None

    def decoding(self):
        return nullcontext()

    def start(self, n: int, mask: torch.Tensor, dtype: torch.dtype) -> None:
        if n > 1:
            self.cache.batch_repeat_interleave(n)
            mask = mask.repeat_interleave(n, 0)
        self.mask = mask

    def select(self, sel: torch.Tensor) -> None:
        self.cache.batch_select_indices(sel)
        self.mask = self.mask[sel]

    def step(self, step: list[int], live: list[int], subset: list[int] | None, next_pos: torch.Tensor, score_rows):
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(step), 1)], dim=1)
        score_rows(subset)
        return step, next_pos, {"attention_mask": self.mask}

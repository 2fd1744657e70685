"""The HF backend on a tiny random Llama with the embedded model's real tokenizer."""

import pytest
import torch

from sys2distill.backends import REGISTRY
from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend, top_p_filter

PROMPTS = [[{"role": "user", "content": "Take the last letters of the words in \"Edgar Bob\" and concatenate them."}],
           [{"role": "user", "content": "Hi"}],
           [{"role": "user", "content": "A coin is heads up. Ka flips the coin. Is the coin still heads up?"}]]


def native_kernel():
    """The hand-written bf16 kernels: skipped where the CPU lacks AVX512-BF16, a failure where it has
    it and they do not build (CI's machines have it)."""
    from sys2distill.backends.native import cpu_flags, native_kernels

    kernels = native_kernels()
    if kernels is None:
        if "avx512_bf16" in (cpu_flags() or set()):
            pytest.fail("this CPU has AVX512-BF16, but the native kernels did not build (see the warning)")
        pytest.skip("the native kernels need AVX512-BF16")
    return kernels


@pytest.fixture
def backend(embedded_tokenizer, tiny_model):
    return HFBackend(loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer), batch_size=4)


def test_registry():
    assert REGISTRY["hf"] is HFBackend


def test_greedy_matches_transformers_generate(backend):
    """Left padding, position ids and the shared-prefill KV cache must not change the output."""
    out = backend.generate(PROMPTS, SamplingParams(max_tokens=12))
    tok, model = backend.tokenizer, backend.model
    for messages, (c,) in zip(PROMPTS, out):
        enc = tok(backend.render(messages), return_tensors="pt", add_special_tokens=False)
        ref = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        new = ref[0, enc.input_ids.shape[1]:]
        assert c.text == tok.decode(new, skip_special_tokens=True).strip()
        assert c.prompt_tokens == enc.input_ids.shape[1]
        assert c.completion_tokens == len(new)


def test_samples_shapes_counts_and_seeds(backend):
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_tokens=10, seed=7)
    out = backend.generate(PROMPTS, params)
    assert [len(cs) for cs in out] == [3, 3, 3]
    for cs in out:
        for c in cs:
            assert 1 <= c.completion_tokens <= 10
            assert c.finish_reason == ("length" if c.completion_tokens == 10 else "stop")
    assert len({c.text for c in out[0]}) > 1  # samples differ
    # Sample j of a prompt does not depend on what else is in the batch.
    alone = backend.generate(PROMPTS[2:], params)
    assert [c.text for c in alone[0]] == [c.text for c in out[2]]
    again = backend.generate(PROMPTS, params)
    assert [[c.text for c in cs] for cs in again] == [[c.text for c in cs] for cs in out]


def test_greedy_n_copies(backend):
    out = backend.generate(PROMPTS[:1], SamplingParams(n=4, max_tokens=6))
    assert len({c.text for c in out[0]}) == 1 and len(out[0]) == 4


def test_stop_string_cuts_text_and_counts_tokens(backend):
    full = backend.generate(PROMPTS[:1], SamplingParams(max_tokens=16))[0][0]
    words = full.text.split()
    assert len(words) > 3
    stop = words[2]
    cut = backend.generate(PROMPTS[:1], SamplingParams(max_tokens=16, stop=(stop,)))[0][0]
    assert stop not in cut.text and full.text.startswith(cut.text)
    assert cut.finish_reason == "stop" and cut.completion_tokens < full.completion_tokens


def test_top_p_filter():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = top_p_filter(probs, 0.7)
    assert torch.allclose(kept, torch.tensor([[0.5, 0.3, 0.0, 0.0]]))  # keeps the token that crosses 0.7
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_batches_bound_padding_and_size(backend):
    """Prompts of very different lengths go to different batches; similar ones fill a batch."""
    texts = [backend.render([{"role": "user", "content": "word " * k}]) for k in (3, 400, 5, 4, 380, 6, 390, 2000)]
    lengths = [len(backend.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    batches = backend._batches(lengths, per_batch=3)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    for b in batches:
        assert len(b) <= 3 and len(b) * max(lengths[i] for i in b) <= 1.25 * sum(lengths[i] for i in b)
    assert [sorted(b) for b in batches] == [[0, 2, 3], [5], [1, 4, 6], [7]]  # 3, 4, 5 words; 6; 380-400; 2000
    # Batching never changes what a sample is: the same prompts one by one give the same text.
    params = SamplingParams(n=2, temperature=1.0, max_tokens=5, seed=7)
    together = backend.generate([[{"role": "user", "content": "word " * k}] for k in (3, 400, 5)], params)
    alone = [backend.generate([[{"role": "user", "content": "word " * k}]], params)[0] for k in (3, 400, 5)]
    assert [[c.text for c in cs] for cs in together] == [[c.text for c in cs] for cs in alone]


def test_batches_bound_kv_cache_positions(backend):
    """With a token budget, rows × (padded prompt + new tokens) stays within it; long prompts get fewer rows."""
    lengths = [100] * 8 + [1000] * 4
    batches = backend._batches(lengths, per_batch=8, max_tokens=2 * 1100, new_tokens=100)
    assert sorted(i for b in batches for i in b) == list(range(12))
    assert [len(b) for b in batches] == [8, 2, 2]  # 8 × 200 fits; 1000-token prompts two at a time
    assert backend._batches([5000], per_batch=8, max_tokens=100) == [[0]]  # one prompt always runs


@pytest.mark.parametrize("chunk", [0, 2])
def test_reserved_cache_layer_holds_what_a_dynamic_layer_holds(chunk):
    """Writing into reserved space must give attention the same keys/values as concatenation,
    through prefill, decoding past the reserve, sample expansion, dropped and moved rows and cropping;
    so must the shared-prefix layer's chunked store of the generated tokens (``chunk``)."""
    from transformers.cache_utils import DynamicLayer

    from sys2distill.backends.shared_prefix import ReservedLayer, SharedPrefixLayer

    torch.manual_seed(0)
    ref, ours = DynamicLayer(), ReservedLayer(reserve=3)
    if chunk:  # after the prompt's own update, the generated tokens go to chunks
        ours = SharedPrefixLayer(reserve=3)
        ours.update(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
        ours.chunk = chunk
    prompt = ours.get_seq_length()
    steps = [("update", 5), ("repeat", 2), ("update", 1), ("update", 1), ("select", [0, 3, 2]), ("update", 1),
             ("update", 1), ("update", 1), ("crop", -2), ("update", 1),
             # in place: a row moved into a finished one's place, a swap, then rows repeated
             ("select", [2, 1]), ("update", 1), ("select", [1, 0]), ("update", 1), ("select", [0, 1, 1]),
             ("update", 1)]
    batch = 2
    for op, arg in steps:
        if op == "update":
            k, v = torch.randn(batch, 3, arg, 4), torch.randn(batch, 3, arg, 4)
            out_ref, out = ref.update(k, v), ours.update(k, v)
            assert all(torch.equal(a, b) for a, b in zip(out_ref, ours.generated() if chunk else out))
        elif op == "repeat":
            ref.batch_repeat_interleave(arg), ours.batch_repeat_interleave(arg)
            batch *= arg
        elif op == "select":
            ref.batch_select_indices(torch.tensor(arg)), ours.batch_select_indices(torch.tensor(arg))
            batch = len(arg)
        else:
            ref.crop(arg), ours.crop(arg)
        keys, values = ours.generated()
        assert torch.equal(ref.keys, keys) and torch.equal(ref.values, values)
        assert ref.get_seq_length() == ours.get_seq_length() - prompt


# Rows that have finished before a step (not fed to the model; none of them survive the drop at
# ``drop``): from the first step on, or after steps that fill every query slot.
@pytest.mark.parametrize("finished, drop", [({0: [4], 1: [4], 2: [1, 4, 5], 5: [1]}, 3),
                                            ({2: [4], 3: [1, 4, 5], 6: [1]}, 4)])
@pytest.mark.parametrize("fused, chunk, native", [(False, 0, False), (True, 0, False), (True, 2, False),
                                                  (True, 3, False), (True, 3, True), (True, 0, True)])
def test_shared_prefix_attention_equals_attention_over_each_rows_full_cache(finished, drop, fused, chunk, native,
                                                                          monkeypatch):
    """Prompt KV stored once per prompt + generated KV per row, merged by log-sum-exp, must give the
    attention a per-row cache gives: left padding, GQA, growing past the reserve, every row fed or
    finished rows left out of a step, dropped rows and a prompt left without rows. ``fused``: the
    one-kernel step of ``fused.py``, run eagerly here (the compiled kernel: the test below), on
    per-row buffers or on ``chunk``-position chunks (full and partly filled ones); ``native``: the
    hand-written bf16 kernel instead (``native.py``; compared with fp32 attention over the same bf16
    numbers, to bf16 rounding)."""
    from types import SimpleNamespace

    from transformers import LlamaConfig

    from sys2distill.backends import fused as fused_module
    from sys2distill.backends import shared_prefix
    from sys2distill.backends.shared_prefix import SharedPrefixCache, shared_prefix_attention

    eager = fused_module.Fused(fused_module._decode_attention, compile=False)
    monkeypatch.setattr(shared_prefix, "decode_attention", eager)

    torch.manual_seed(0)
    prompts, n, kv_heads, groups, dim, prompt_len = 3, 4, 2, 3, 64 if native else 8, 6
    dtype = torch.bfloat16 if native else torch.float32
    config = LlamaConfig(num_hidden_layers=1, hidden_size=kv_heads * groups * dim, num_attention_heads=kv_heads * groups,
                         num_key_value_heads=kv_heads)
    cache = SharedPrefixCache(config, reserve=2)
    cache.fused, cache.kv_chunk = fused, chunk
    cache.native = native_kernel() if native else None
    mask = torch.ones(prompts, prompt_len, dtype=torch.long)
    mask[0, :2] = mask[2, :5] = 0  # left padding
    pk, pv = (torch.randn(prompts, kv_heads, prompt_len, dim, dtype=dtype) for _ in range(2))
    assert cache.update(pk, pv, 0)[0] is pk  # prefill attends with the model's own attention
    cache.start_sampling(n, mask, torch.float32)
    assert (cache.native is not None) == native
    # Reference: each row holds its prompt's KV and its own generated KV, masked where padded.
    ref_k, ref_v, ref_mask = pk.float().repeat_interleave(n, 0), pv.float().repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    module = SimpleNamespace(layer_idx=0)
    rows = torch.arange(prompts * n)
    for step in range(drop + 3):
        if step == drop:  # drop rows, all of prompt 1's among them
            rows = torch.tensor([0, 2, 3, 8, 11])
            cache.batch_select_indices(rows)
            ref_k, ref_v, ref_mask = ref_k[rows], ref_v[rows], ref_mask[rows]
        batch = len(rows)
        fed = torch.tensor([r for r in range(batch) if r not in finished.get(step, [])])
        cache.decode_rows(fed if len(fed) < batch else None)
        k, v = (torch.randn(batch, kv_heads, 1, dim, dtype=dtype) for _ in range(2))
        q = torch.randn(batch, kv_heads * groups, 1, dim, dtype=dtype)
        layer = cache.layers[0]
        if layer._k is not None:  # spare room as a reused buffer may hold it: not even a float
            # (chunked: the chunks not begun; the rest of the current one is zeros, masked)
            begun = -(-layer._len // chunk) if chunk else 0
            spare = (slice(begun, None),) if chunk else (slice(None), slice(None), slice(layer._len, None))
            layer._k[spare], layer._v[spare] = float("nan"), float("nan")
        gk, gv = cache.update(k[fed], v[fed], 0)
        assert layer.chunk == (chunk if fused else 0)
        left_out = [r for r in range(batch) if r not in fed.tolist()]
        rows_k, rows_v = layer.generated()
        assert not rows_k[left_out, :, -1].any() and not rows_v[left_out, :, -1].any()  # zeros for finished rows
        torch.testing.assert_close(rows_k[fed, :, -1], k[fed, :, 0], rtol=0, atol=0)
        out, _ = shared_prefix_attention(module, q[fed], gk, gv, scaling=0.3, shared_prefix=cache)
        ref_k, ref_v = torch.cat([ref_k, k.float()], 2), torch.cat([ref_v, v.float()], 2)
        ref_mask = torch.cat([ref_mask, torch.ones(batch, 1, dtype=torch.long)], 1)
        expected = torch.nn.functional.scaled_dot_product_attention(
            q.float(), ref_k.repeat_interleave(groups, 1), ref_v.repeat_interleave(groups, 1),
            attn_mask=ref_mask[:, None, None, :].bool(), scale=0.3)
        assert out.shape == (len(fed), 1, kv_heads * groups, dim) and out.dtype == dtype
        tol = {"rtol": 2 ** -8, "atol": 1e-5} if native else {"rtol": 1e-5, "atol": 1e-6}  # bf16: one rounding
        torch.testing.assert_close(out.float(), expected.transpose(1, 2)[fed], **tol)
        assert cache.get_seq_length() == prompt_len + step + 1


def test_shared_prefix_decoding_gives_the_per_row_cache_tokens(embedded_tokenizer, tiny_model, monkeypatch):
    """The same samples (and greedy text) with the shared prompt cache as with a per-row cache,
    with rows dropped at every step; sliding-window models keep their own cache."""
    from transformers import AttentionInterface

    from sys2distill.backends import shared_prefix

    calls = []
    counted = lambda *a, **k: calls.append(1) or shared_prefix.shared_prefix_attention(*a, **k)  # noqa: E731
    AttentionInterface.register(shared_prefix.ATTENTION_NAME, counted)
    try:
        # Large weights make peaked next-token distributions: with the default init a random model
        # samples from a ~40k-token nucleus, where float rounding alone moves a draw to a neighbour.
        loaded = (tiny_model(embedded_tokenizer, initializer_range=1.0), embedded_tokenizer)
        # Rows dropped at every step, or kept until half the batch has finished (the output layer
        # then scores the live rows only).
        shared, lazy, per_row = (HFBackend(loaded=loaded, batch_size=8) for _ in range(3))
        assert shared.shared_prefix == (loaded[0].device.type == "cpu")  # the default: on CPU only
        shared.shared_prefix = lazy.shared_prefix = True
        per_row.shared_prefix = False
        shared.max_finished_share = per_row.max_finished_share = 0.0
        lazy.max_finished_share = 0.5
        # Stop strings end rows at different steps (this random model rarely draws end of turn).
        for params in (SamplingParams(n=4, temperature=1.0, top_p=0.9, max_tokens=12, seed=3, stop=("e",)),
                       SamplingParams(max_tokens=12, stop=("e",))):
            ref = [[(c.text, c.completion_tokens) for c in cs] for cs in per_row.generate(PROMPTS, params)]
            assert len({n for cs in ref for _, n in cs}) > 1  # rows finish at different steps
            for backend in (shared, lazy):
                assert [[(c.text, c.completion_tokens) for c in cs] for cs in backend.generate(PROMPTS, params)] == ref
        assert calls  # the shared-prefix path actually ran
        assert loaded[0].config._attn_implementation != shared_prefix.ATTENTION_NAME  # restored after decoding
    finally:
        AttentionInterface.register(shared_prefix.ATTENTION_NAME, shared_prefix.shared_prefix_attention)
    from transformers import MistralConfig, MistralForCausalLM
    config = MistralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=1, vocab_size=len(embedded_tokenizer), sliding_window=4)
    assert not shared_prefix.SharedPrefixCache.supports(MistralForCausalLM(config))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_the_same_tokens_and_follow_weight_updates(embedded_tokenizer, tiny_model, dtype):
    """MKL-packed (fp32) and oneDNN-packed (bf16) linear weights, sibling projections fused or not: same
    tokens as plain ``linear``, the model's own forward restored afterwards, and a weight changed in
    place (training) packed again."""
    from sys2distill.backends.hf import packing_available

    model = tiny_model(embedded_tokenizer, initializer_range=1.0).to(dtype)
    if not packing_available(model):
        pytest.skip(f"no packed {dtype} matmul in this torch build or on this CPU")
    packed, plain = (HFBackend(loaded=(model, embedded_tokenizer), batch_size=8) for _ in range(2))
    plain.pack_weights = False
    packed.fused = plain.fused = False  # only the packing differs (fused projections or not)
    packed.fuse_projections = True
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_tokens=10, seed=1)

    def texts(backend):
        return [[c.text for c in cs] for cs in backend.generate(PROMPTS, params)]

    before = texts(plain)
    assert texts(packed) == before and packed._packed
    packed.fuse_projections = False  # each projection its own matmul: the same tokens again
    assert texts(packed) == before
    packed.fuse_projections = True
    # One packing serves every row count (the output layer scores only the live rows).
    from sys2distill.backends.hf import packed_linear_weights

    layer = model.model.layers[0].mlp.up_proj
    with torch.inference_mode():
        for rows in (1, 5, 8, 37):
            x = torch.randn(rows, 1, layer.in_features, dtype=dtype)
            expected = torch.nn.functional.linear(x, layer.weight)
            with packed_linear_weights(model, {}, 8):
                torch.testing.assert_close(layer(x), expected)
        # Query/key/value and gate/up run as one matmul each; every member gives its own output,
        # also when called alone or with another input than its siblings.
        from sys2distill.backends.hf import fusable_groups

        attention = model.model.layers[0].self_attn
        groups = fusable_groups(model)
        assert len(groups) == 2 * len(model.model.layers) and [attention.q_proj, attention.k_proj,
                                                                attention.v_proj] in groups
        x, other = (torch.randn(5, 1, attention.q_proj.in_features, dtype=dtype) for _ in range(2))
        with packed_linear_weights(model, {}, 8):
            outputs = [attention.q_proj(x), attention.k_proj(x), attention.k_proj(other), attention.v_proj(x)]
        for out, (proj, inp) in zip(outputs, [(attention.q_proj, x), (attention.k_proj, x),
                                              (attention.k_proj, other), (attention.v_proj, x)]):
            torch.testing.assert_close(out, torch.nn.functional.linear(inp, proj.weight))
    assert all("forward" not in vars(m) for m in model.modules())  # patched forwards removed
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(-3.0)
    after = texts(plain)
    assert after != before and texts(packed) == after


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_projections_with_biases(embedded_tokenizer, dtype):
    """Qwen2's query/key/value projections carry biases: fused, each still gives its own ``linear``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sys2distill.backends.hf import fusable_groups, packed_linear_weights, packing_available

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(embedded_tokenizer))
    model = Qwen2ForCausalLM(config).to(dtype).eval()
    if not packing_available(model):
        pytest.skip(f"no packed {dtype} matmul in this torch build or on this CPU")
    attention = model.model.layers[0].self_attn
    assert attention.k_proj.bias is not None and len(fusable_groups(model)) == 2
    x = torch.randn(3, 2, 32, dtype=dtype)
    with torch.inference_mode(), packed_linear_weights(model, {}, 8):
        outputs = [attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)]
    for out, proj in zip(outputs, (attention.q_proj, attention.k_proj, attention.v_proj)):
        torch.testing.assert_close(out, torch.nn.functional.linear(x, proj.weight, proj.bias))


def test_compiled_decode_attention_equals_the_eager_one_and_falls_back(monkeypatch, caplog):
    """The compiled kernel computes what the eager function does (to fp32 rounding, in bf16 to its
    rounding), for all rows fed and for finished rows left out; where compiling fails the eager
    function answers, with one warning."""
    from sys2distill.backends import fused

    torch.manual_seed(0)
    prompts, n, kv_heads, groups, dim, prompt_len, positions = 2, 3, 2, 3, 8, 5, 5
    slot = torch.arange(prompts * n)
    places = (((slot // n)[:, None, None] * kv_heads + torch.arange(kv_heads)[None, :, None]) * n
              + (slot % n)[:, None, None]) * groups + torch.arange(groups)[None, None, :]
    for dtype in (torch.float32, torch.bfloat16):
        pk, pv = torch.randn(prompts, kv_heads, prompt_len, dim), torch.randn(prompts, kv_heads, prompt_len, dim)
        mask = torch.zeros(prompts, 1, 1, prompt_len)
        mask[0, ..., :2] = float("-inf")
        # Chunks of 2 positions (the last one half filled, its spare slot zero), or one chunk of all.
        key, value = (torch.randn(3, prompts * n, kv_heads, 2, dim, dtype=dtype) for _ in range(2))
        key[-1, ..., -1, :] = value[-1, ..., -1, :] = 0
        bias = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, float("-inf")]])
        whole = [x.permute(1, 2, 0, 3, 4).flatten(2, 3)[None, :, :, :positions] for x in (key, value)]
        for live in (slot, torch.tensor([0, 2, 5])):
            q = torch.randn(len(live), kv_heads, groups, dim, dtype=dtype)
            args = (q, places[live].reshape(-1), n, pk, pv, mask, key, value, bias, live, 0.3)
            expected = fused._decode_attention(*args)
            tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1e-2}
            torch.testing.assert_close(fused.decode_attention(*args), expected, **tol)
            one_chunk = (*args[:6], *whole, torch.zeros(1, positions), *args[-2:])
            torch.testing.assert_close(fused.decode_attention(*one_chunk), expected, **tol)
    broken = fused.Fused(fused._decode_attention)

    def no_compiler(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run
    monkeypatch.setattr(torch, "compile", no_compiler)
    with caplog.at_level("WARNING"):
        assert torch.equal(broken(*args), expected) and torch.equal(broken(*args), expected)
    assert sum("running it eagerly" in r.message for r in caplog.records) == 1


def test_fused_decoding_gives_the_plain_tokens(embedded_tokenizer, tiny_model, monkeypatch):
    """The fused attention step wired into decoding (fp32 prompt keys, chunked generated cache,
    finished rows left out, rows dropped at every step or lazily) gives the plain path's tokens in
    fp32 — run eagerly, the compiled kernel's equality is tested above — and so does a failed
    compile. bf16 on CPU takes the fused path and packed weights by default; there rounding differs
    from the plain path's (fp32 inside the kernel, one rounding at its end), and a random model's
    near-ties move tokens, so bf16 is only run here."""
    from sys2distill.backends import fused, shared_prefix
    from sys2distill.backends.hf import packing_available

    loaded = (tiny_model(embedded_tokenizer, initializer_range=1.0), embedded_tokenizer)
    if loaded[0].device.type != "cpu":
        pytest.skip("the fused path is CPU-only")
    params = [SamplingParams(n=4, temperature=1.0, top_p=0.9, max_tokens=12, seed=3, stop=("e",)),
              SamplingParams(max_tokens=12, stop=("e",))]
    calls = []
    with monkeypatch.context() as m:
        counted = fused.Fused(lambda *a: calls.append(1) or fused._decode_attention(*a), compile=False)
        m.setattr(shared_prefix, "decode_attention", counted)
        fast, lazy, plain = (HFBackend(loaded=loaded, batch_size=8) for _ in range(3))
        assert not plain.fused  # fp32: the plain path by default
        fast.fused = lazy.fused = True
        fast.kv_chunk = 3  # several chunks in 12 tokens (lazy: the default, one partly filled chunk)
        fast.max_finished_share = plain.max_finished_share = 0.0
        for p in params:
            expected = [[(c.text, c.completion_tokens) for c in cs] for cs in plain.generate(PROMPTS, p)]
            assert len({k for cs in expected for _, k in cs}) > 1  # rows finish at different steps
            for backend in (fast, lazy):
                assert [[(c.text, c.completion_tokens) for c in cs] for cs in backend.generate(PROMPTS, p)] == expected
        assert calls
        # A compile that fails: one step runs the eager kernel, the rest the plain attention.
        broken = fused.Fused(fused._decode_attention)
        m.setattr(torch, "compile", lambda fn, **kwargs: lambda *a: (_ for _ in ()).throw(RuntimeError("no compiler")))
        m.setattr(shared_prefix, "decode_attention", broken)
        expected = [[c.text for c in cs] for cs in plain.generate(PROMPTS, params[0])]
        assert [[c.text for c in cs] for cs in fast.generate(PROMPTS, params[0])] == expected and broken.failed
    bf16 = HFBackend(loaded=(loaded[0].to(torch.bfloat16), embedded_tokenizer), batch_size=8)
    assert bf16.fused and bf16.pack_weights == packing_available(bf16.model)
    out = bf16.generate(PROMPTS, params[0])
    assert [len(cs) for cs in out] == [4, 4, 4] and all(1 <= c.completion_tokens <= 12 for cs in out for c in cs)


@pytest.mark.parametrize("dim, groups", [(64, 3), (128, 1), (64, 8)])
def test_native_decode_attention_equals_fp32_attention(dim, groups):
    """The hand-written kernel against fp32 attention over the same bf16 numbers, to one bf16 rounding:
    masked prompt positions (a whole block of 16, a partial last block), queries of a subset of the cache's
    rows in another order, a partly filled last chunk, a chunk filled exactly, and per-row buffers
    with spare room; shapes it has no variant for are refused."""
    kernel = native_kernel()
    torch.manual_seed(0)
    prompts, samples, kv_heads, prompt_len, chunk = 2, 3, 2, 21, 8
    rows = prompts * samples
    pk, pv = (torch.randn(prompts, kv_heads, prompt_len, dim, dtype=torch.bfloat16) for _ in range(2))
    bias = torch.zeros(prompts, prompt_len)
    bias[1, :17] = float("-inf")  # left padding past a whole block of 16
    bias[0, 16:] = float("-inf")  # and a masked last, partial block (any additive bias is taken)
    for length, live in ((1, torch.arange(rows)), (8, torch.tensor([4, 0, 5])), (19, torch.tensor([3, 1]))):
        q = torch.randn(len(live), kv_heads, groups, dim, dtype=torch.bfloat16)
        prompt_of = live // samples
        chunks = -(-length // chunk) + 1  # one chunk more than filled, as the cache reserves
        key, value = (torch.randn(chunks, rows + 1, kv_heads, chunk, dim, dtype=torch.bfloat16)[:, :rows]
                      for _ in range(2))
        per_row = [x.permute(1, 2, 0, 3, 4).flatten(2, 3) for x in (key, value)]  # [rows, heads, positions, dim]
        full_k, full_v = (torch.cat([p_[prompt_of], g[live, :, :length]], 2).float() for p_, g in ((pk, per_row[0]),
                                                                                                   (pv, per_row[1])))
        scores = torch.einsum("rhgd,rhpd->rhgp", q.float(), full_k) * 0.125
        scores[..., :prompt_len] += bias[prompt_of][:, None, None, :]
        expected = torch.einsum("rhgp,rhpd->rhgd", scores.softmax(-1), full_v)
        for keys, values in ((key, value), (per_row[0].contiguous(), per_row[1].contiguous())):
            out = kernel.attention(q, prompt_of, live, pk, pv, bias, keys, values, length, 0.125)
            assert out.dtype == torch.bfloat16 and out.shape == q.shape
            torch.testing.assert_close(out.float(), expected, rtol=2 ** -8, atol=1e-5)
    assert kernel.supports_attention(dim, groups) and not kernel.supports_attention(96, groups) \
        and not kernel.supports_attention(dim, 9)
    with pytest.raises(ValueError, match="no variant"):
        kernel.attention(q.new_zeros(len(live), kv_heads, 9, dim), prompt_of, live, pk, pv, bias, key, value, length, 0.125)
    with pytest.raises(ValueError, match="unexpected"):  # fp32 queries
        kernel.attention(q.float(), prompt_of, live, pk, pv, bias, key, value, length, 0.125)


def test_native_kernel_decodes_as_the_compiled_one_and_is_optional(embedded_tokenizer, tiny_model, monkeypatch,
                                                                    caplog, tmp_path):
    """bf16 decoding through the native kernels gives the tokens of fused.py's kernel and the eager ops
    (fp32 inside and the same roundings: only summation order differs); a model without an attention
    variant for its heads, or a machine where the kernels do not build, decodes through fused.py's
    kernel, with one warning."""
    from sys2distill.backends import fused, native, shared_prefix

    kernel = native_kernel()
    model = tiny_model(embedded_tokenizer, initializer_range=1.0, hidden_size=128).to(torch.bfloat16)  # head_dim 64
    calls = []

    class Counted:
        def __getattr__(self, name):  # the elementwise kernels as they are
            return getattr(kernel, name)

        def attention(self, *args):
            calls.append("native")
            return kernel.attention(*args)
    monkeypatch.setattr(native, "_kernel", [Counted()])
    counted = fused.Fused(lambda *a: calls.append("fused") or fused._decode_attention(*a), compile=False)
    monkeypatch.setattr(shared_prefix, "decode_attention", counted)
    fast, compiled = (HFBackend(loaded=(model, embedded_tokenizer), batch_size=8) for _ in range(2))
    compiled.native_attention = compiled.native_elementwise = False
    assert fast.fused and fast.native_attention and fast.native_elementwise
    params = SamplingParams(n=4, temperature=1.0, top_p=0.9, max_tokens=12, seed=3)
    expected = [[c.text for c in cs] for cs in compiled.generate(PROMPTS, params)]
    assert calls and set(calls) == {"fused"}
    calls.clear()
    assert [[c.text for c in cs] for cs in fast.generate(PROMPTS, params)] == expected
    assert calls and set(calls) == {"native"}  # the native kernel answered every step
    calls.clear()
    narrow = tiny_model(embedded_tokenizer, initializer_range=1.0).to(torch.bfloat16)  # head_dim 8: no variant
    HFBackend(loaded=(narrow, embedded_tokenizer), batch_size=8).generate(PROMPTS[:1], params)
    assert calls and set(calls) == {"fused"}
    monkeypatch.setattr(native, "_kernel", [])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with caplog.at_level("WARNING"):
        assert native.native_kernels() is None and native.native_kernels() is None
        calls.clear()
        assert [[c.text for c in cs] for cs in fast.generate(PROMPTS, params)] == expected
        assert calls and set(calls) == {"fused"}
    assert sum("native bf16 kernels are unavailable" in r.message for r in caplog.records) == 1


def test_batch_limits(embedded_tokenizer, tiny_model):
    """Unset, 512 rows and 131,072 positions where the fused bf16 path samples several continuations
    per prompt; 256 and 65,536 with one sample per prompt (every row a prompt to prefill) and in fp32;
    set values win."""
    fp32 = HFBackend(loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    bf16 = HFBackend(loaded=(tiny_model(embedded_tokenizer).to(torch.bfloat16), embedded_tokenizer))
    assert bf16.fused and not fp32.fused
    assert bf16.batch_limits(8) == (512, 131072) and bf16.batch_limits(1) == (256, 65536)
    assert fp32.batch_limits(8) == fp32.batch_limits(1) == (256, 65536)
    bf16.batch_size = 64
    assert bf16.batch_limits(8) == (64, 131072)


def test_native_elementwise_kernels_give_the_eager_outputs(embedded_tokenizer, tiny_model):
    """RMSNorm and SiLU(gate) · up on the native kernels: the eager ops' values (all but rare last-bit
    flips from the variance's summation order), on rows of any stride and widths that are not a
    multiple of 16; the rotary embedding bit for bit, on transposed queries. A norm of another formula
    or an MLP with another activation keeps its own forward, rotary inputs the kernel does not take
    (cos and sin broadcast over the batch) go to the original function, and everything is restored."""
    from transformers.models.llama import modeling_llama
    from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

    from sys2distill.backends.hf import native_elementwise

    kernels = native_kernel()
    torch.manual_seed(0)
    for width in (576, 37):
        norm = LlamaRMSNorm(width, eps=1e-5).to(torch.bfloat16)
        norm.weight.data.normal_()
        x = (torch.randn(9, 2 * width) * 3).to(torch.bfloat16)[:, :width]  # rows 2 × width apart
        expected = norm(x)
        out = kernels.rms_norm(x, norm.weight, norm.variance_epsilon)
        torch.testing.assert_close(out.float(), expected.float(), rtol=2 ** -7, atol=0)
        assert (out == expected).float().mean() > 0.99
        gate_up = (torch.randn(9, 2 * width) * 4).to(torch.bfloat16)
        gate, up = gate_up[:, :width], gate_up[:, width:]  # columns of one matmul, as fused projections give
        expected = torch.nn.functional.silu(gate) * up
        out = kernels.silu_mul(gate, up)
        torch.testing.assert_close(out.float(), expected.float(), rtol=2 ** -7, atol=1e-30)
        assert (out == expected).float().mean() > 0.99

    class OnePlusNorm(LlamaRMSNorm):  # Gemma's formula
        def forward(self, x):
            return super().forward(x) * (1 + self.weight) / self.weight

    q = (torch.randn(3, 5, 4, 64) * 4).to(torch.bfloat16).transpose(1, 2)  # [batch, heads, seq, dim], transposed
    k = (torch.randn(3, 5, 2, 64) * 4).to(torch.bfloat16).transpose(1, 2)
    cos, sin = (torch.randn(3, 5, 64).to(torch.bfloat16) for _ in range(2))
    expected = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.equal(kernels.rotary(q, cos, sin), expected[0]) and torch.equal(kernels.rotary(k, cos, sin), expected[1])

    model = tiny_model(embedded_tokenizer, hidden_size=128).to(torch.bfloat16)  # head_dim 64
    config = model.config
    model.model.layers[1].mlp = LlamaMLP(config.__class__(**{**config.to_dict(), "hidden_act": "gelu"})).to(torch.bfloat16)
    model.model.norm = OnePlusNorm(128).to(torch.bfloat16)
    model.model.norm.weight.data.normal_()
    original = modeling_llama.apply_rotary_pos_emb
    with native_elementwise(model, kernels):
        switched = {name for name, m in model.named_modules() if "forward" in vars(m)}
        rotary = modeling_llama.apply_rotary_pos_emb
        assert rotary is not original and all(torch.equal(a, b) for a, b in zip(rotary(q, k, cos, sin), expected))
        broadcast = (cos[:1], sin[:1])  # one position table for the whole batch
        assert all(torch.equal(a, b) for a, b in zip(rotary(q, k, *broadcast), original(q, k, *broadcast)))
    assert switched == {"model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm", "model.layers.0.mlp",
                        "model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm"}
    assert not any("forward" in vars(m) for m in model.modules()) and modeling_llama.apply_rotary_pos_emb is original


# Median nucleus sizes at top-p 0.5 / 0.95: 16k / 44k (full path), 119 / 5.7k, 7 / 412 (second
# level, 512), 1 / 2 (first level, 64).
@pytest.mark.parametrize("scale", [0.3, 2.0, 3.0, 10.0])
def test_top_k_nucleus_sampling_equals_the_full_sort(scale):
    """The fast path must draw exactly the token the full-vocabulary nucleus draw gives."""
    from sys2distill.backends.hf import inverse_cdf_sample, sample_top_p

    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(48, 49152) * scale / 0.7, -1)
    for top_p in (0.5, 0.9, 0.95, 1.0):
        full = inverse_cdf_sample(top_p_filter(probs, top_p), [torch.Generator().manual_seed(i) for i in range(48)])
        fast = sample_top_p(probs, top_p, [torch.Generator().manual_seed(i) for i in range(48)], k=64)
        assert torch.equal(full, fast)


@pytest.mark.parametrize("scale", [0.3, 2.0, 3.0, 10.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sampling_from_logits_equals_the_softmax_path(scale, dtype):
    """``sample_logits`` (log-sum-exp and block maxima in one compiled pass, probabilities of the top
    tokens only) draws the token of the full-vocabulary nucleus draw from the softmax, with a partial
    last block, rows whose nucleus is wider than the top 16 (then 64: scale 3 has both), and compiled or eager. bf16 logits tie
    often: where the nucleus ends inside a run of equal probabilities, which of them it keeps is
    arbitrary (the full sort and the top-k search may pick differently) — the only rows allowed to differ."""
    from sys2distill.backends import hf

    torch.manual_seed(2)
    logits = (torch.randn(48, 49000) * scale).to(dtype)
    logits[:4, -3] += 20.0  # a row's best token in the partial last block
    probs = torch.softmax(logits.float() / 0.7, -1)
    ordered = probs.sort(-1, descending=True).values

    def seeded():
        return [torch.Generator().manual_seed(i) for i in range(48)]

    for compiled in (True, False):
        summary = hf.Fused(hf._logit_summary, compile=compiled)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(hf, "logit_summary", summary)
            for top_p in (0.5, 0.95, 1.0):
                full = hf.inverse_cdf_sample(top_p_filter(probs, top_p), seeded())
                fast = hf.sample_logits(logits, 0.7, top_p, seeded())
                size = ((ordered.cumsum(-1) - ordered) <= top_p).sum(-1)  # nucleus sizes
                last = ordered.gather(1, size.unsqueeze(1) - 1).squeeze(1)
                after = ordered.gather(1, size.clamp(max=ordered.shape[1] - 1).unsqueeze(1)).squeeze(1)
                tied = (last == after) & (size < ordered.shape[1])
                assert torch.equal(full[~tied], fast[~tied])
                assert dtype == torch.bfloat16 or not tied.any()
        assert not summary.failed


@pytest.mark.parametrize("width", [49152, 49000, 3000])
def test_top_k_by_blocks_gives_topk_values(width):
    """Block pruning keeps exactly the ``k`` largest values (a partial last block included, and
    few blocks falling back to a plain ``topk``); each index points at its value."""
    from sys2distill.backends.hf import top_k_by_blocks

    torch.manual_seed(0)
    x = torch.softmax(torch.randn(32, width) * 3, -1)
    x[0, -1] = 1.0  # the maximum of one row in the partial last block (or the last block)
    values, ids = top_k_by_blocks(x, 64)
    expected = x.topk(64, dim=-1).values
    assert torch.equal(values, expected)
    assert torch.equal(x.gather(1, ids), values)
    assert ids[0, 0] == width - 1


def test_compacted_order_moves_only_rows_past_the_new_end():
    """Dropping finished rows keeps every live row once, and moves only those past the new batch end."""
    from sys2distill.backends.hf import compacted_order

    assert compacted_order([0, 2, 3, 5, 7]) == [0, 5, 2, 3, 7]  # rows 5 and 7 fill the places of 1 and 4
    assert compacted_order([0, 1, 2]) == [0, 1, 2]  # the finished rows were last: nothing moves
    for live in ([1, 2, 3], [4, 6], list(range(0, 64, 3))):
        order = compacted_order(live)
        assert sorted(order) == live
        moved = [k for i, k in enumerate(order) if k != i]
        assert moved == [k for k in live if k >= len(live)]


def few_shot_prompts(k: int = 4) -> list:
    """Prompts that open with the same few-shot turns (lookup's exemplars) and differ in their last question."""
    from sys2distill.methods import REGISTRY as METHODS
    from sys2distill.tasks.lookup import Lookup

    task = Lookup(train_size=2, test_size=k)
    return [METHODS["cot_fewshot"](task).prompt("answer", ex) for ex in task.load("test")]


@pytest.mark.parametrize("n, temperature", [(1, 0.0), (3, 1.0)])
def test_a_prefix_every_prompt_shares_is_prefilled_once_with_the_same_tokens(embedded_tokenizer, tiny_model,
                                                                               monkeypatch, n, temperature):
    import sys2distill.backends.hf as hf

    backend = HFBackend(loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer), batch_size=16)
    prompts = few_shot_prompts()
    ids = backend.tokenizer([backend.render(m) for m in prompts], add_special_tokens=False).input_ids
    assert hf.common_prefix_length(ids) >= hf.COMMON_PREFIX_MIN  # the exemplars, tokenised alike
    calls = []
    forward = backend.model.forward
    monkeypatch.setattr(backend.model, "forward", lambda *a, **kw: calls.append(kw["input_ids"].shape) or forward(*a, **kw))
    params = SamplingParams(n=n, temperature=temperature, max_tokens=8, seed=3)
    shared = backend.generate(prompts, params)
    assert calls[0] == (1, hf.common_prefix_length(ids))  # the prefix, once
    assert calls[1][0] == len(prompts) and calls[1][1] < max(map(len, ids)) - hf.COMMON_PREFIX_MIN
    monkeypatch.setattr(hf, "COMMON_PREFIX_MIN", 10**9)  # every prompt prefilled whole
    assert backend.generate(prompts, params) == shared
    if n == 1:  # and what transformers' own generate writes
        tok, model = backend.tokenizer, backend.model
        for messages, (c,) in zip(prompts, shared):
            enc = tok(backend.render(messages), return_tensors="pt", add_special_tokens=False)
            new = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
            assert c.text == tok.decode(new[0, enc.input_ids.shape[1]:], skip_special_tokens=True).strip()


def test_common_prefix_length_leaves_every_prompt_a_token_of_its_own():
    from sys2distill.backends.hf import common_prefix_length

    assert common_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter one keeps its last token
    assert common_prefix_length([[5, 2], [1, 2]]) == 0


def test_logprobs_are_the_models_own_for_the_tokens_it_wrote(backend):
    """``SamplingParams.logprobs``: the summed log-probabilities (temperature 1) of each completion's tokens, end of
    text included, as transformers' own logits give them; off by default."""
    assert backend.generate(PROMPTS[:1], SamplingParams(max_tokens=8))[0][0].logprob is None
    out = backend.generate(PROMPTS, SamplingParams(max_tokens=8, logprobs=True))
    tok, model = backend.tokenizer, backend.model
    for messages, (c,) in zip(PROMPTS, out):
        enc = tok(backend.render(messages), return_tensors="pt", add_special_tokens=False)
        ref = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id,
                             output_logits=True, return_dict_in_generate=True)
        new = ref.sequences[0, enc.input_ids.shape[1]:]
        expected = sum(torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(ref.logits, new))
        assert c.logprob == pytest.approx(expected, abs=1e-3) and c.logprob < 0
    sampled = backend.generate(PROMPTS[:2], SamplingParams(n=3, temperature=0.7, top_p=0.9, max_tokens=8, seed=3,
                                                           logprobs=True))
    plain = backend.generate(PROMPTS[:2], SamplingParams(n=3, temperature=0.7, top_p=0.9, max_tokens=8, seed=3))
    assert [[c.text for c in cs] for cs in sampled] == [[c.text for c in cs] for cs in plain]  # asking changes no draw
    assert all(c.logprob is not None and c.logprob < 0 for cs in sampled for c in cs)

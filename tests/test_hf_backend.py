"""The HF backend on a tiny random Llama with the embedded model's real tokenizer."""

import pytest
import torch

from sys2distill.backends import REGISTRY
from sys2distill.backends.base import SamplingParams
from sys2distill.backends.hf import HFBackend, top_p_filter

PROMPTS = [[{"role": "user", "content": "Take the last letters of the words in \"Edgar Bob\" and concatenate them."}],
           [{"role": "user", "content": "Hi"}],
           [{"role": "user", "content": "A coin is heads up. Ka flips the coin. Is the coin still heads up?"}]]


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


def test_reserved_cache_layer_holds_what_a_dynamic_layer_holds():
    """Writing into reserved space must give attention the same keys/values as concatenation,
    through prefill, decoding past the reserve, sample expansion, dropped rows and cropping."""
    from transformers.cache_utils import DynamicLayer

    from sys2distill.backends.hf import ReservedLayer

    torch.manual_seed(0)
    ref, ours = DynamicLayer(), ReservedLayer(reserve=3)
    steps = [("update", 5), ("repeat", 2), ("update", 1), ("update", 1), ("select", [0, 3, 2]), ("update", 1),
             ("update", 1), ("update", 1), ("crop", -2), ("update", 1)]
    batch = 2
    for op, arg in steps:
        if op == "update":
            k, v = torch.randn(batch, 3, arg, 4), torch.randn(batch, 3, arg, 4)
            out_ref, out = ref.update(k, v), ours.update(k, v)
            assert all(torch.equal(a, b) for a, b in zip(out_ref, out))
        elif op == "repeat":
            ref.batch_repeat_interleave(arg), ours.batch_repeat_interleave(arg)
            batch *= arg
        elif op == "select":
            ref.batch_select_indices(torch.tensor(arg)), ours.batch_select_indices(torch.tensor(arg))
            batch = len(arg)
        else:
            ref.crop(arg), ours.crop(arg)
        assert torch.equal(ref.keys, ours.keys) and torch.equal(ref.values, ours.values)
        assert ref.get_seq_length() == ours.get_seq_length()


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

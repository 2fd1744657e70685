"""The ``vllm`` backend's parameter mapping, with a stand-in ``vllm`` module (no GPU, no vLLM)."""

import sys
import types

import pytest

from sys2distill.backends import REGISTRY
from sys2distill.backends.base import SamplingParams
from sys2distill.backends.vllm_engine import VLLMBackend
from sys2distill.errors import UserError

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def fake_vllm(monkeypatch, embedded_tokenizer):
    """A ``vllm`` module whose LLM records its arguments and answers with scripted outputs."""
    mod = types.ModuleType("vllm")

    class SamplingParams:  # vLLM's class takes keyword arguments
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            self.kw, self.calls = kw, []

        def get_tokenizer(self):
            return embedded_tokenizer

        def generate(self, inputs, params, use_tqdm=True):
            self.calls.append((inputs, params))
            out = lambda k: types.SimpleNamespace(text=f" out{k} ", token_ids=[1] * (k + 2),  # noqa: E731
                                                  finish_reason="length" if k == 0 else "stop")
            return [types.SimpleNamespace(prompt_token_ids=i["prompt_token_ids"], outputs=[out(k) for k in range(p.kw["n"])])
                    for i, p in zip(inputs, params)]

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_registered_and_missing_vllm_is_a_user_error(monkeypatch):
    assert REGISTRY["vllm"] is VLLMBackend
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm → ImportError
    with pytest.raises(UserError, match=r"needs vLLM .*pip install 'sys2distill\[vllm\]'"):
        VLLMBackend()


def test_engine_arguments(fake_vllm, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    b = VLLMBackend(model=str(tmp_path), dtype="bfloat16", tensor_parallel_size=4)
    assert b.llm.kw == {"model": str(tmp_path), "dtype": "bfloat16", "tensor_parallel_size": 4, "seed": 0}
    assert b.model_id == f"vllm:{tmp_path}"


def test_sampling_mapping_and_outputs(fake_vllm, tmp_path, embedded_tokenizer):
    (tmp_path / "config.json").write_text("{}")
    b = VLLMBackend(model=str(tmp_path))
    params = SamplingParams(n=3, temperature=0.8, top_p=0.9, max_tokens=32, stop=("\n\n",), seed=4)
    out = b.generate([HI, [{"role": "user", "content": "Yo"}]], params)
    inputs, sps = b.llm.calls[0]
    assert [sp.kw["n"] for sp in sps] == [3, 3]
    kw = sps[0].kw
    assert (kw["temperature"], kw["top_p"], kw["max_tokens"], kw["stop"]) == (0.8, 0.9, 32, ["\n\n"])
    assert kw["skip_special_tokens"]
    assert sps[0].kw["seed"] != sps[1].kw["seed"]  # per-prompt seeds: independent of the batch
    assert b.generate([HI], params) and b.llm.calls[1][1][0].kw["seed"] == sps[0].kw["seed"]
    # Token ids of the chat-templated prompt without added special tokens, as the HF backend feeds it.
    rendered = embedded_tokenizer.apply_chat_template(HI, tokenize=False, add_generation_prompt=True)
    assert inputs[0]["prompt_token_ids"] == embedded_tokenizer(rendered, add_special_tokens=False).input_ids
    c = out[0]
    assert [x.text for x in c] == ["out0", "out1", "out2"] and [x.completion_tokens for x in c] == [2, 3, 4]
    assert [x.finish_reason for x in c] == ["length", "stop", "stop"]
    assert c[0].prompt_tokens == len(inputs[0]["prompt_token_ids"])


def test_greedy_asks_once_and_copies(fake_vllm, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    b = VLLMBackend(model=str(tmp_path))
    out = b.generate([HI], SamplingParams(n=4, temperature=0, top_p=0.5, max_tokens=8))
    kw = b.llm.calls[0][1][0].kw
    assert kw["n"] == 1 and kw["top_p"] == 1.0 and kw["stop"] is None
    assert len(out[0]) == 4 and len({x.text for x in out[0]}) == 1

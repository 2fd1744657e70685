"""The real embedded model: located without importing its package, checked, converted, generating."""

import pytest

from sys2distill.backends.base import SamplingParams
from sys2distill.errors import UserError
from sys2distill.models import (EMBEDDED_SHA256, check_model_name, embedded_checkpoint, embedded_gguf, sha256_file,
                                verify_embedded)


def test_gguf_is_found_and_verified():
    path = embedded_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    verify_embedded(path)  # size and sha256 match
    assert sha256_file(path) == EMBEDDED_SHA256


def test_tampered_gguf_is_refused(tmp_path):
    bad = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(UserError, match="does not match the expected SmolLM2 checkpoint"):
        verify_embedded(bad)


def test_model_names(tmp_path):
    assert check_model_name("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(UserError, match="does not exist"):
        check_model_name("./missing/model")
    with pytest.raises(UserError, match="has no config.json"):
        check_model_name(str(tmp_path))


@pytest.mark.slow
def test_real_model_generates_with_exact_counts():
    from sys2distill.backends.hf import HFBackend

    assert (embedded_checkpoint() / "model.safetensors").exists()
    backend = HFBackend("embedded", batch_size=8)
    assert "SmolLM2-135M-Instruct" in backend.model_id
    prompt = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    (c,) = backend.generate([prompt], SamplingParams(max_tokens=16))[0]
    assert "paris" in c.text.lower()
    rendered = backend.render(prompt)
    assert rendered.startswith("<|im_start|>system") and rendered.endswith("<|im_start|>assistant\n")
    assert c.prompt_tokens == len(backend.tokenizer(rendered, add_special_tokens=False).input_ids)
    assert 1 <= c.completion_tokens <= 16
    samples = backend.generate([prompt], SamplingParams(n=4, temperature=0.8, max_tokens=8, seed=3))[0]
    assert len(samples) == 4 and all(1 <= s.completion_tokens <= 8 for s in samples)

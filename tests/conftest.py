"""Shared fixtures: the embedded model's real tokenizer and tiny random models built on it."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def embedded_tokenizer():
    """The SmolLM2 tokenizer from the converted embedded checkpoint (converts once, ~30 s)."""
    from transformers import AutoTokenizer

    from sys2distill.models import embedded_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_tiny_model(tokenizer, seed: int = 0, **overrides):
    """A fresh random 2-layer Llama on ``tokenizer``'s vocabulary, on the device named by
    ``SYS2DISTILL_TEST_DEVICE`` (default ``cpu``; e.g. ``cuda`` on a GPU machine)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**config, **overrides})).eval()
    return model.to(os.environ.get("SYS2DISTILL_TEST_DEVICE", "cpu"))


@pytest.fixture
def tiny_model():
    """Factory: ``tiny_model(tokenizer, seed=0, **config)`` → ``build_tiny_model``."""
    return build_tiny_model

"""``backend.distributed: ray`` on a local 2-CPU Ray cluster: 2 workers, results in input order."""

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (.ci/run installs it: pip install 'sys2distill[ray]')")

from sys2distill.backends.base import SamplingParams  # noqa: E402
from sys2distill.backends.build import build_backend  # noqa: E402
from sys2distill.backends.cache import CachedBackend  # noqa: E402
from sys2distill.backends.distributed import RayBackend  # noqa: E402
from sys2distill.backends.hf import HFBackend  # noqa: E402
from sys2distill.config import BackendConfig  # noqa: E402
from sys2distill.errors import UserError  # noqa: E402

PROMPTS = [[{"role": "user", "content": f"Say {w}."}] for w in ["one", "two words", "three of them", "x", "y z", "last"]]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory, embedded_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    t = embedded_tokenizer
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=1, vocab_size=len(t), bos_token_id=t.bos_token_id,
                                         eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id))
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    t.save_pretrained(path)
    return str(path)


def test_two_workers_match_one_process_in_input_order(cluster, tiny_path, tmp_path):
    params = SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=3)
    local = HFBackend(model=tiny_path, batch_size=8).generate(PROMPTS, params)
    backend = build_backend(BackendConfig(distributed="ray", num_workers=2, batch_size=8, cache=True), tiny_path, tmp_path)
    assert isinstance(backend, CachedBackend) and isinstance(backend.inner, RayBackend)
    assert len(backend.inner.workers) == 2
    assert backend.generate(PROMPTS, params) == local  # per-sample seeds: sharding changes nothing
    # Two replicas in two processes, one shard each.
    pids = set(ray.get([w.__ray_call__.remote(lambda self: __import__("os").getpid()) for w in backend.inner.workers]))
    assert len(pids) == 2
    assert backend.generate(PROMPTS, params) == local and backend.hits == 12  # the cache answers the rerun
    backend.inner.close()


def test_worker_setup_error_is_one_line(cluster):
    with pytest.raises(UserError, match="^model path /no/such/model does not exist"):
        RayBackend("hf", {"model": "/no/such/model"}, num_workers=1)

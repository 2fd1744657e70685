"""From the ``backend`` config section to a backend: knob checks, the cache, pipeline wiring."""

import pytest
from fake_openai import FakeServer

from sys2distill.backends.build import build_backend
from sys2distill.backends.cache import CachedBackend
from sys2distill.backends.hf import HFBackend
from sys2distill.backends.openai_compat import OpenAIBackend
from sys2distill.config import BackendConfig, load_config
from sys2distill.errors import UserError
from sys2distill.pipeline import Pipeline
from sys2distill.records import Trace, read_records


def test_knob_the_engine_ignores_is_an_error(tmp_path):
    with pytest.raises(UserError, match="^backend.base_url is not used by backend 'hf': remove it"):
        build_backend(BackendConfig(base_url="http://x/v1"), "embedded", tmp_path)
    with pytest.raises(UserError, match="backend.device is not used by backend 'openai'"):
        build_backend(BackendConfig(name="openai", device="cuda"), "embedded", tmp_path)


def test_a_run_folders_config_builds_its_backend_again(tmp_path, embedded_tokenizer, tiny_model):
    """A run folder's config.yaml spells out every knob, defaults included: loaded back, it must
    build the same backend, not trip the check above."""
    from sys2distill.config import dump_config

    loaded = (tiny_model(embedded_tokenizer), embedded_tokenizer)
    server = FakeServer()
    try:
        for overrides, engine in ((["backend.batch_size=32"], HFBackend),
                                  (["backend.name=openai", f"backend.base_url={server.base_url}"], OpenAIBackend)):
            cfg = load_config("rar_coin_flip", overrides)
            (tmp_path / "config.yaml").write_text(dump_config(cfg))
            again = load_config(tmp_path / "config.yaml")
            assert again == cfg
            assert isinstance(build_backend(again.backend, "embedded", tmp_path, loaded=loaded), engine)
    finally:
        server.stop()


def test_openai_knobs_reach_the_backend_and_cache_wraps_it(tmp_path):
    server = FakeServer()
    try:
        cfg = BackendConfig(name="openai", base_url=server.base_url, max_concurrency=3, timeout=7, max_retries=1,
                            cache=True)
        b = build_backend(cfg, "embedded", tmp_path)
        assert isinstance(b, CachedBackend) and b.path == tmp_path / "cache.sqlite"
        inner = b.inner
        assert isinstance(inner, OpenAIBackend)
        assert (inner.base_url, inner.max_concurrency, inner.timeout, inner.max_retries) == (server.base_url, 3, 7, 1)
        shared = build_backend(cfg.model_copy(update={"cache": str(tmp_path / "shared.db")}), "embedded", tmp_path)
        assert shared.path == tmp_path / "shared.db" and b.model_id == "openai:fake-model"
    finally:
        server.stop()


def test_distilled_checkpoint_of_an_openai_run_is_evaluated_with_hf(tmp_path, embedded_tokenizer, tiny_model):
    tiny_model(embedded_tokenizer).save_pretrained(tmp_path / "ckpt")
    embedded_tokenizer.save_pretrained(tmp_path / "ckpt")
    b = build_backend(BackendConfig(name="openai", base_url="http://127.0.0.1:9/v1"), str(tmp_path / "ckpt"), tmp_path,
                      checkpoint=True)
    assert isinstance(b, HFBackend)  # the server only holds the model it was started with


def test_pipeline_generate_stage_reuses_the_cache(tmp_path, embedded_tokenizer, tiny_model):
    cfg = load_config(None, [f"run_dir={tmp_path}/{{name}}", "task.train_size=4", "generation.num_samples=2",
                             "generation.max_tokens=4", "distill.methods=[rar_2step]", "backend.cache=true"])
    first = Pipeline(cfg, loaded_base=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    first.run(stages=("generate",))
    assert first.backend().misses == 4 * 2 * 2  # 4 inputs × 2 samples × 2 RaR steps
    traces = read_records(first.dir / "generate" / "rar_2step.jsonl", Trace)
    again = Pipeline(cfg, loaded_base=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    again.run(stages=("generate",), force=("generate",))  # the traces file is deleted, the cache is not
    assert again.backend().misses == 0 and again.backend().hits == 16
    assert read_records(again.dir / "generate" / "rar_2step.jsonl", Trace) == traces

import pytest

from sys2distill.config import dump_config, load_config
from sys2distill.errors import UserError


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ngeneration: {num_samples: 4}\ntask: {name: coin_flip, options: {num_people: 3}}\n")
    cfg = load_config(path, ["generation.num_samples=2", "evaluate.systems=[system1]", "train.learning_rate=3e-4"])
    assert cfg.generation.num_samples == 2
    assert cfg.task.name == "coin_flip" and cfg.task.options == {"num_people": 3}
    assert cfg.evaluate.systems == ["system1"]
    assert cfg.train.learning_rate == 3e-4
    assert str(cfg.path) == "runs/x"
    assert load_config(None, [f"{k}={v}" for k, v in []]).model == "embedded"
    assert "num_samples: 2" in dump_config(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["generation.num_sample=3"], "unknown config key 'generation.num_sample': did you mean 'generation.num_samples'?"),
    (["taks.name=x"], "unknown config key 'taks': did you mean 'task'?"),
    (["generation.chunk_size=16"], "now 'generation.chunk_sequences', counted in sequences"),  # renamed, new unit
    (["train.mode=qlora"], "bad value for config key 'train.mode'"),
    (["generation.num_samples=0"], "bad value for config key 'generation.num_samples'"),
    (["generation.num_samples"], "is not key=value"),
    (["name=a/b"], "bad value for config key 'name'"),
])
def test_bad_keys_and_values_are_one_clear_line(overrides, message):
    with pytest.raises(UserError) as e:
        load_config(None, overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="YAML mapping"):
        load_config(bad)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


def test_shipped_configs_by_name():
    from sys2distill.config import CONFIG_DIR, shipped_configs

    assert {"rar_last_letter", "rar_coin_flip", "s2a_sycophancy", "bsm_judge", "cot_gsm8k"} <= set(shipped_configs())
    assert load_config("bsm_judge").task.name == "pairwise_judge"
    # The repository's configs/ is the packaged folder, so the two never drift apart.
    assert (CONFIG_DIR / "rar_last_letter.yaml").read_text() == open("configs/rar_last_letter.yaml").read()
    with pytest.raises(UserError, match="or a shipped config's name .*bsm_judge"):
        load_config("bsm_judg")

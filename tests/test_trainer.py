"""The SFT stage on a tiny random Llama with the real SmolLM2 tokenizer (paper Sec. 4)."""

from __future__ import annotations

import json

import pytest
import torch

from sys2distill.config import TrainConfig
from sys2distill.errors import UserError
from sys2distill.models import load_model_and_tokenizer
from sys2distill.records import DistillRecord, write_jsonl
from sys2distill.trainer import build_trainer, train

WORDS = ["apple banana", "cherry date", "elder fig", "grape honey", "iris jade", "kiwi lemon", "mango nut", "olive pear"]


def write_records(path, n):
    records = [
        DistillRecord(
            id=f"ex{i}",
            prompt=[{"role": "user", "content": f"Take the last letters of the words in '{w}' and concatenate them."}],
            completion=[{"role": "assistant", "content": f"The answer is {''.join(x[-1] for x in w.split())}."}],
            metadata={"method": "rar_2step"},
        )
        for i, w in enumerate(WORDS[:n])
    ]
    write_jsonl(path, records)
    return path


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def save_base(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_full_finetune_changes_every_parameter_and_reloads(tmp_path, embedded_tokenizer, tiny_model):
    model = tiny_model(embedded_tokenizer)
    before = snapshot(model)
    cfg = TrainConfig(learning_rate=1e-3, max_steps=3, batch_size=4)
    out = train(write_records(tmp_path / "train.jsonl", 8), "tiny", tmp_path / "out", cfg, loaded=(model, embedded_tokenizer))

    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert unchanged == []
    done = json.loads((out / "DONE.json").read_text())
    assert done["steps"] == 3 and done["examples"] == 8 and done["final_loss"] > 0 and done["train_seconds"] > 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3]

    reloaded, tokenizer = load_model_and_tokenizer(str(out))
    assert len(tokenizer) == len(embedded_tokenizer)
    for name, p in reloaded.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name]), name


def test_loss_is_masked_on_prompt_tokens(tmp_path, embedded_tokenizer, tiny_model):
    trainer = build_trainer(
        write_records(tmp_path / "train.jsonl", 2), "tiny", tmp_path / "out", TrainConfig(batch_size=2),
        loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        real = ids[mask.bool()]
        prompt_len = len(real) - int((labels != -100).sum())
        text = embedded_tokenizer.decode(real[:prompt_len])
        assert text.endswith("<|im_start|>assistant\n") and "Take the last letters" in text
        assert (labels[:prompt_len] == -100).all()  # the input never contributes to the loss
        assert torch.equal(labels[prompt_len : len(real)], real[prompt_len:])  # the answer always does
        assert (labels[len(real) :] == -100).all()  # nor does padding
        assert embedded_tokenizer.decode(real[prompt_len:]).startswith("The answer is ")


def test_lora_changes_only_adapter_and_loads_merged(tmp_path, embedded_tokenizer, tiny_model):
    model = tiny_model(embedded_tokenizer)
    base = save_base(model, embedded_tokenizer, tmp_path / "base")
    before = snapshot(model)
    cfg = TrainConfig(mode="lora", learning_rate=1e-2, max_steps=3, batch_size=4, lora_r=4, lora_alpha=8)
    out = train(write_records(tmp_path / "train.jsonl", 8), base, tmp_path / "out", cfg, loaded=(model, embedded_tokenizer))

    # The base model was wrapped in place: LoRA weights moved, every original weight stayed put.
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, before[name.replace(".base_layer", "")]), name

    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((tmp_path / "base").resolve())
    assert (out / "DONE.json").is_file() and not (out / "model.safetensors").exists()
    merged, _ = load_model_and_tokenizer(str(out))
    changed = {n for n, p in merged.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.endswith("proj.weight") for n in changed)  # only the LoRA-targeted linears


def test_overfitting_two_records_lowers_the_loss(tmp_path, embedded_tokenizer, tiny_model):
    cfg = TrainConfig(learning_rate=3e-2, max_steps=20, batch_size=2)
    out = train(
        write_records(tmp_path / "train.jsonl", 2), "tiny", tmp_path / "out", cfg,
        loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer),
    )
    losses = [e["loss"] for e in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in e]
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0]  # 10.8 → 3.7 here


def test_empty_dataset_is_a_user_error(tmp_path, embedded_tokenizer, tiny_model):
    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="no training examples .* loosen filter.min_agreement"):
        train(empty, "tiny", tmp_path / "out", TrainConfig(), loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    assert not (tmp_path / "out" / "DONE.json").exists()


def _padding(lengths, batches):
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_length_buckets_cover_every_record_once_and_cut_padding():
    import random

    from transformers.trainer_pt_utils import get_length_grouped_indices

    from sys2distill.trainer import LengthBucketSampler

    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(40, 60), rng.randint(80, 300)]) for _ in range(100)]  # short and long answers
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=0)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(100)) and list(sampler) == [i for b in batches for i in b]
    assert [len(b) for b in batches] == [8] * 12 + [4]  # the short batch last, so the loader's cuts match ours
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # longest first: out of memory shows at step 1
    assert sampler.batches() == batches  # deterministic per epoch ...
    sampler.set_epoch(1)
    assert sampler.batches() != batches  # ... and reshuffled across epochs
    hf = get_length_grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(0))
    hf_batches = [hf[i:i + 8] for i in range(0, 100, 8)]
    assert _padding(lengths, batches) < 0.1 < _padding(lengths, hf_batches)


def test_grouped_training_batches_follow_the_length_buckets(tmp_path, embedded_tokenizer, tiny_model):
    trainer = build_trainer(write_records(tmp_path / "train.jsonl", 8), "tiny", tmp_path / "out",
                            TrainConfig(batch_size=3), loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer))
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    expected = [sorted(lengths[i] for i in b) for b in trainer._get_train_sampler().batches()]
    seen = [sorted(b["attention_mask"].sum(-1).tolist()) for b in trainer.get_train_dataloader()]
    assert seen == expected


def test_sft_args_reach_the_trainer_beside_the_shortcuts(tmp_path, embedded_tokenizer, tiny_model):
    """Any SFTConfig field through train.sft_args: here a constant schedule replaces the default linear decay."""
    def lrs(cfg, out):
        train(write_records(tmp_path / "train.jsonl", 4), "tiny", tmp_path / out, cfg,
              loaded=(tiny_model(embedded_tokenizer), embedded_tokenizer))
        return [e["learning_rate"] for e in map(json.loads, (tmp_path / out / "train_log.jsonl").read_text().splitlines())
                if "learning_rate" in e]

    assert lrs(TrainConfig(max_steps=3, batch_size=2, learning_rate=3e-3), "linear") == [3e-3, 2e-3, 1e-3]
    constant = TrainConfig(max_steps=3, batch_size=2, sft_args={"learning_rate": 3e-3, "lr_scheduler_type": "constant"})
    assert lrs(constant, "constant") == [3e-3] * 3  # sft_args.learning_rate stands in for the unset shortcut


@pytest.mark.parametrize("cfg, message", [
    (TrainConfig(sft_args={"lr_sheduler_type": "cosine"}), "train.sft_args.lr_sheduler_type is not an SFTConfig field: "
                                                           "did you mean 'lr_scheduler_type'?"),
    (TrainConfig(learning_rate=1e-4, sft_args={"learning_rate": 1e-3}),
     "train.learning_rate and train.sft_args.learning_rate set the same thing: keep one of them"),
    (TrainConfig(epochs=2, sft_args={"num_train_epochs": 1}), "train.epochs and train.sft_args.num_train_epochs set the same"),
    (TrainConfig(sft_args={"output_dir": "/tmp/x"}), "train.sft_args.output_dir cannot be set: the checkpoint is written to"),
    (TrainConfig(sft_args={"optim": "adamw_typo"}), "bad train.sft_args: adamw_typo is not a valid OptimizerNames"),
    (TrainConfig(sft_args={"max_grad_norm": "one"}), "bad value for train.sft_args.max_grad_norm: Input should be a valid number"),
])
def test_bad_sft_args_are_one_line(tmp_path, cfg, message):
    from sys2distill.trainer import sft_config

    with pytest.raises(UserError) as e:
        sft_config(cfg, tmp_path)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)

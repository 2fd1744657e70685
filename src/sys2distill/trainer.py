"""Fine-tune the model on input → final System 2 answer pairs (paper Sec. 4).

"Distilling System 2 into System 1" (Yu et al. 2024, arXiv 2407.06023) trains the same model
with supervised fine-tuning on the prompt–completion records of ``DistillRecord``, with the
loss on the answer tokens only; the paper used lr 5.5e-6 and dropout 0.1 for a 70B model.
This is a thin wrapper around TRL's ``SFTTrainer``: full fine-tuning or LoRA, a per-step
``train_log.jsonl``, a checkpoint that ``models.load_model_and_tokenizer`` loads, and a
``DONE.json`` marker written last (a folder without it counts as unfinished).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sys2distill import rundir
from sys2distill.config import TrainConfig
from sys2distill.errors import UserError
from sys2distill.models import load_model_and_tokenizer, resolve_model

DONE, LOG = rundir.DONE, rundir.TRAIN_LOG


def _log_callback(path: Path):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Append every log entry (loss, lr, grad norm per step) as one JSON line."""

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")  # a retrained folder starts a fresh log

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return JsonlLog()


class LengthBucketSampler:
    """Training order with records of similar length in each batch, the batches in random order.

    transformers' ``group_by_length`` sorts inside megabatches of min(50, n // (4 × batch))
    batches, so a 96-record distillation set is sorted in groups of 24 and keeps 16% padding.
    Here each megabatch of up to 50 batches (all of a small dataset) is sorted by length with a
    random order among equal lengths and cut into batches; the batches are then shuffled, the
    longest first (an out-of-memory error shows at step 1) and a short last batch (the shortest
    records) kept last so the data loader's cuts stay aligned with ours. A new order every epoch
    (``set_epoch``); 4% padding on the same set (bench/training.py).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, megabatch: int = 50):
        self.lengths, self.batch_size, self.seed, self.megabatch = lengths, batch_size, seed, megabatch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer at each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        import torch

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        size, span = self.batch_size, self.batch_size * self.megabatch
        batches = []
        for start in range(0, len(order), span):
            # Longest first (stable: random order among equal lengths), so a short last batch holds the shortest.
            group = sorted(order[start:start + span], key=lambda i: -self.lengths[i])
            batches += [group[i:i + size] for i in range(0, len(group), size)]
        short = [batches.pop()] if batches and len(batches[-1]) < size else []  # only the very last can be short
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        if batches:
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
            batches.insert(0, batches.pop(longest))
        return batches + short

    def __iter__(self):
        return iter([i for batch in self.batches() for i in batch])


def _base_path(model: str) -> str:
    """The base model as a path that resolves from any working directory (or a Hub id)."""
    source = resolve_model(model)
    return str(Path(source).resolve()) if Path(source).exists() else source


# The named ``train.*`` keys and the SFTConfig field each one sets.
SHORTCUTS = {"learning_rate": "learning_rate", "epochs": "num_train_epochs", "max_steps": "max_steps",
             "batch_size": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps",
             "max_length": "max_length", "warmup_ratio": "warmup_steps", "weight_decay": "weight_decay",
             "seed": "seed", "report_to": "report_to", "group_by_length": "train_sampling_strategy"}
# SFTConfig fields sys2distill owns: the run folder's layout depends on them.
RESERVED = {"output_dir": "the checkpoint is written to <run_dir>/train/<entry>"}
# SFTConfig fields transformers renamed (old: new): a user's value under the old name replaces our default.
ALIASES = {"gradient_checkpointing": "activation_checkpointing"}


def sft_arguments(cfg: TrainConfig, output_dir: Path, run_name: str | None = None) -> dict:
    """Keyword arguments for ``trl.SFTConfig``: our defaults, then the ``train.*`` shortcuts, then
    ``train.sft_args`` (any SFTConfig field). An unknown field, a reserved one, or one set both as a
    shortcut and in ``sft_args`` is a UserError naming the fix."""
    import dataclasses
    import difflib
    import typing

    import torch
    from pydantic import TypeAdapter, ValidationError
    from trl import SFTConfig

    fields = sorted(f.name for f in dataclasses.fields(SFTConfig) if f.init)
    types = typing.get_type_hints(SFTConfig)
    extra = {}
    for key, value in cfg.sft_args.items():
        if key in RESERVED:
            raise UserError(f"train.sft_args.{key} cannot be set: {RESERVED[key]}")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see the fields of trl.SFTConfig"
            raise UserError(f"train.sft_args.{key} is not an SFTConfig field: {hint}")
        try:  # SFTConfig checks few types itself: a string max_grad_norm would fail mid-training
            extra[key] = TypeAdapter(types[key]).validate_python(value)
        except ValidationError as e:
            raise UserError(f"bad value for train.sft_args.{key}: {e.errors()[0]['msg']} (got {value!r})") from None
    for name, field in SHORTCUTS.items():
        if name in cfg.model_fields_set and field in cfg.sft_args:
            raise UserError(f"train.{name} and train.sft_args.{field} set the same thing: keep one of them")
    cuda = torch.cuda.is_available()
    args = dict(
        output_dir=str(output_dir),
        run_name=run_name,  # the run's name in wandb / mlflow / trackio
        completion_only_loss=True,  # paper Sec. 4: loss on the answer tokens, never on the input
        max_length=cfg.max_length,  # prompt + answer; longer records are cut at the end
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,  # > 0 overrides epochs
        per_device_train_batch_size=cfg.batch_size,
        train_sampling_strategy="random",  # group_by_length: LengthBucketSampler, set in build_trainer
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=min(cfg.warmup_ratio, 0.999),  # transformers 5 dropped warmup_ratio: a float < 1 is a ratio
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        use_cpu=not cuda,  # also what makes torchrun on CPUs data-parallel (gloo) instead of N copies
        bf16=cuda and torch.cuda.is_bf16_supported(),  # TRL defaults it on, even on CPU (slow there)
        fp16=False,
        logging_steps=1,
        save_strategy="no",  # only the final model is saved, by ``train``
        report_to=cfg.report_to,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
    )
    # TRL turns checkpointing on; small models are compute-bound. transformers 5.23 renamed the field.
    args["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = False
    for alias, name in ALIASES.items():
        if alias in cfg.sft_args:
            args.pop(name, None)
    return {**args, **extra}


def sft_config(cfg: TrainConfig, output_dir: Path, run_name: str | None = None):
    """``trl.SFTConfig`` for ``cfg``; a value SFTConfig rejects (``optim: adam_typo``) is one UserError line."""
    from trl import SFTConfig

    try:
        return SFTConfig(**sft_arguments(cfg, output_dir, run_name))
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"bad train.sft_args: {first}") from None


def build_trainer(dataset_path: Path, model: str, output_dir: Path, cfg: TrainConfig, *, loaded=None,
                  run_name: str | None = None):
    """Set up an ``SFTTrainer`` on the JSONL of ``DistillRecord``s; ``train`` runs it."""
    from datasets import load_dataset
    from transformers import set_seed
    from trl import SFTTrainer

    from sys2distill.tracking import check_installed

    if not Path(dataset_path).is_file():
        raise UserError(f"training data not found: {dataset_path}: rerun the dataset stage")
    if not Path(dataset_path).read_text(encoding="utf-8").strip():
        raise UserError(f"no training examples in {dataset_path}: the filter kept no input (see the filter/ folder for why): "
                        "loosen filter.min_agreement, raise task.train_size, or use a stronger model")
    check_installed(cfg.report_to)
    args = sft_config(cfg, output_dir, run_name)
    set_seed(cfg.seed)  # before the model is touched: LoRA's random init happens inside SFTTrainer
    net, tokenizer = loaded if loaded is not None else load_model_and_tokenizer(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = load_dataset("json", data_files=str(dataset_path), split="train")
    data = data.select_columns(["prompt", "completion"])  # TRL's conversational prompt–completion format

    peft_config = None
    if cfg.mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules="all-linear",  # every linear layer but the output head
            task_type="CAUSAL_LM",
        )
    trainer_cls = SFTTrainer
    if cfg.group_by_length and "train_sampling_strategy" not in cfg.sft_args:  # a sampler of the user's own wins
        class BucketedSFTTrainer(SFTTrainer):
            def _get_train_sampler(self, train_dataset=None):
                data = train_dataset if train_dataset is not None else self.train_dataset
                return LengthBucketSampler([len(ids) for ids in data["input_ids"]],
                                           self.args.per_device_train_batch_size, self.args.seed)

        trainer_cls = BucketedSFTTrainer
    trainer = trainer_cls(
        model=net,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_log_callback(Path(output_dir) / LOG)],
    )
    if len(trainer.train_dataset) == 0:
        raise UserError(f"every prompt in {dataset_path} fills train.max_length={cfg.max_length}: raise train.max_length")
    if cfg.mode == "lora":  # the adapter must name a base that loads from anywhere (peft stores name_or_path)
        trainer.model.peft_config["default"].base_model_name_or_path = _base_path(model)
    return trainer


def train(dataset_path: Path, model: str, output_dir: Path, cfg: TrainConfig, *, loaded=None,
          model_name: str | None = None, run_name: str | None = None) -> Path:
    """Fine-tune ``model`` on ``dataset_path`` and save a loadable checkpoint in ``output_dir``.

    ``loaded`` is an already-loaded ``(model, tokenizer)`` pair (LoRA wraps that model in place);
    ``model`` still names the base, which a LoRA adapter records. Full mode saves the whole
    model, LoRA mode the adapter (``load_model_and_tokenizer`` merges it); both save the
    tokenizer and end with ``DONE.json``. ``model_name`` is the name written into a full
    checkpoint's config; ``run_name`` names the run in wandb / mlflow / trackio.
    """
    output_dir = Path(output_dir)
    (output_dir / DONE).unlink(missing_ok=True)  # a retrain is unfinished until it ends
    trainer = build_trainer(dataset_path, model, output_dir, cfg, loaded=loaded, run_name=run_name)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    if model_name and cfg.mode == "full":
        config = trainer.model.config
        config.name_or_path = model_name
        if hasattr(config, "_model_name_or_path"):  # a GGUF's general.name, e.g. "Smollm2 135M 8k Lc100K Mix1 Ep2"
            config._model_name_or_path = model_name
    trainer.save_model(str(output_dir))  # rank 0 writes; the tokenizer is saved alongside
    if trainer.is_world_process_zero():
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        done = {
            "steps": trainer.state.global_step,
            "final_loss": losses[-1] if losses else None,
            "mean_loss": result.training_loss,
            "train_seconds": round(seconds, 2),
            "examples": len(trainer.train_dataset),
            "mode": cfg.mode,
            "model": model,
            "processes": trainer.args.world_size,  # > 1 under torchrun / accelerate launch (data parallel)
        }
        (output_dir / DONE).write_text(json.dumps(done, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()  # no rank returns before the checkpoint is complete
    return output_dir

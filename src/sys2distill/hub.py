"""What the Hugging Face Hub sees of a run: model cards, dataset cards, and ``sys2distill push``.

A distilled checkpoint (``train/<entry>/``) gets a ``README.md`` model card: Hub metadata (base
model, library, tags) and how it was made — System 2 method, filter, data size, training
settings — with the run's results table and the paper's citation. Its training data
(``distill/<entry>.jsonl``) gets a dataset card beside it (``distill/<entry>.card.md``, the
dataset repo's ``README.md``). Both are built with ``huggingface_hub``'s ``ModelCardData`` /
``DatasetCardData`` and parsed back by ``ModelCard`` / ``DatasetCard`` before they are written.
Card format: https://huggingface.co/docs/hub/model-cards and /datasets-cards.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sys2distill import rundir
from sys2distill.config import RunConfig, load_config
from sys2distill.errors import UserError
from sys2distill.models import EMBEDDED
from sys2distill.paper import BIBTEX, CITATION

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded GGUF was quantised from (Apache-2.0)
CARD = rundir.CARD


def base_model_id(model: str) -> str | None:
    """The base model's Hub id for card metadata; None for a local folder (not on the Hub)."""
    if model == EMBEDDED:
        return EMBEDDED_HUB_ID
    return None if Path(model).expanduser().exists() else model


def distilled_model_name(model: str, entry: str) -> str:
    """The name written into a distilled checkpoint's config, e.g. ``SmolLM2-135M-Instruct-sys2distill-rar_2step``."""
    base = base_model_id(model) or Path(model).expanduser().resolve().name
    return f"{base.split('/')[-1]}-sys2distill-{entry}"


def dataset_card_path(dataset_path: Path) -> Path:
    return Path(dataset_path).with_suffix(".card.md")


def first_markdown_table(text: str) -> str | None:
    """The first pipe table in a markdown text (header, separator, rows), e.g. results.md's main table."""
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            end = i + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return "\n".join(lines[i:end])
    return None


def _spec(run_config: RunConfig, entry: str):
    for spec in run_config.distill.specs:
        if spec.key == entry:
            return spec
    raise UserError(f"the run's config has no distill entry {entry!r}: choose from "
                    f"{', '.join(s.key for s in run_config.distill.specs)}")


def _label(method: str, run_config: RunConfig) -> str:
    """How reports name a method: a registered method's label, or a chain's (``chains:`` in the config)."""
    from sys2distill import methods

    if method in run_config.chains:
        return run_config.chains[method].label or method
    return methods.REGISTRY[method].label


def _making_of(run_dir: Path, run_config: RunConfig, entry: str) -> list[str]:
    """Table rows saying how a distilled model's data were made: method, sampling, filter, yield."""
    spec, g = _spec(run_config, entry), run_config.generation
    f, n = spec.filter_or(run_config.filter), spec.samples(g)
    decisions = run_dir / "filter" / f"{entry}.jsonl"
    kept = inputs = None
    if decisions.is_file():
        rows = [json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines() if line.strip()]
        inputs, kept = len(rows), sum(r["kept"] for r in rows)
    vote = (f"`{f.name}`, the winner's share of the {n} samples ≥ {f.min_agreement}" if f.enabled
            else "none (every input with an answer kept: the paper's no-filter ablation)")
    return [f"| task | `{run_config.task.name}` ({run_config.task.source} inputs, seed {run_config.task.seed}) |",
            f"| System 2 method | `{spec.method}` ({_label(spec.method, run_config)}): {n} samples per unlabeled input, temperature {g.temperature}, "
            f"top-p {g.top_p}, at most {g.max_tokens} tokens per step |",
            f"| self-consistency filter | {vote} |",
            f"| distillation data | {'' if kept is None else f'{kept} of {inputs} unlabeled inputs kept; '}"
            f"target `{run_config.distill.target}` (the System 2 answer, its reasoning dropped) |"]


def write_model_card(checkpoint_dir: Path, *, run_config: RunConfig, train_record: dict,
                     results_markdown_table: str | None, repo: str | None = None) -> Path:
    """Write ``checkpoint_dir/README.md``: the model card of the distilled model in ``checkpoint_dir``
    (``<run_dir>/train/<entry>``). ``train_record`` is its ``DONE.json``; ``results_markdown_table``
    the run's results table (None before evaluation); ``repo`` the Hub id it is pushed to (model and data)."""
    card = model_card(checkpoint_dir, run_config=run_config, train_record=train_record,
                      results_markdown_table=results_markdown_table, repo=repo)
    card.save(Path(checkpoint_dir) / CARD)
    return Path(checkpoint_dir) / CARD


def model_card(checkpoint_dir: Path, *, run_config: RunConfig, train_record: dict, results_markdown_table: str | None,
               repo: str | None = None):
    """The model card ``write_model_card`` writes, as a ``huggingface_hub.ModelCard`` (nothing written)."""
    from huggingface_hub import ModelCard, ModelCardData

    checkpoint_dir = Path(checkpoint_dir)
    entry, run_dir = checkpoint_dir.name, checkpoint_dir.parent.parent
    t, lora = run_config.train, run_config.train.mode == "lora"
    base = base_model_id(run_config.model)
    name = distilled_model_name(run_config.model, entry)
    spec = _spec(run_config, entry)
    data = ModelCardData(
        model_name=name,
        base_model=base,
        library_name="peft" if lora else "transformers",
        pipeline_tag="text-generation",
        license="apache-2.0" if run_config.model == EMBEDDED else None,  # other bases: their own license applies
        datasets=[repo] if repo else None,
        tags=["sys2distill", "system-2-distillation", "trl", "sft", spec.method, run_config.task.name]
             + (["lora"] if lora else []),
    )
    method = f"LoRA (r {t.lora_r}, alpha {t.lora_alpha}, dropout {t.lora_dropout})" if lora else "full fine-tuning"
    length = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.epochs:g} epochs"
    settings = (f"{method}, TRL `SFTTrainer`, loss on the answer tokens only; learning rate {t.learning_rate}, {length}, "
                f"batch size {t.batch_size} × {t.grad_accum} accumulation × {train_record.get('processes', 1)} processes, "
                f"max length {t.max_length}, warmup {t.warmup_ratio}, weight decay {t.weight_decay}, seed {t.seed}"
                + (f"; SFTConfig settings `{json.dumps(t.sft_args)}`" if t.sft_args else ""))
    loss = train_record.get("final_loss")
    outcome = (f"{train_record.get('examples')} records, {train_record.get('steps')} steps, final loss "
               f"{'n/a' if loss is None else f'{loss:.4g}'}, {train_record.get('train_seconds')} s")
    body = [
        f"# {name}", "",
        f"`{base or run_config.model}` fine-tuned to give, in one direct answer, what its own "
        f"{_label(spec.method, run_config)} reasoning arrived at: System 2 answers on unlabeled inputs, kept when "
        "self-consistent, distilled into System 1 as in *Distilling System 2 into System 1* "
        f"(Yu et al. 2024, [arXiv:2407.06023](https://arxiv.org/abs/2407.06023)). Made with sys2distill.", "",
        "## How it was made", "", "| | |", "|---|---|",
        f"| base model | `{base or run_config.model}` |",
        *_making_of(run_dir, run_config, entry),
        f"| training | {settings} |",
        f"| training result | {outcome} |", "",
        "## Results", "",
        results_markdown_table if results_markdown_table
        else "Not evaluated yet: `sys2distill evaluate CONFIG` then `sys2distill report CONFIG` add the table here.", "",
        "## Use", "",
        "Prompt it as in training: the task's System 1 prompt in the model's chat template, no reasoning instruction.", "",
        "```python", "from transformers import pipeline", "",
        f"chat = pipeline(\"text-generation\", model=\"{repo or checkpoint_dir}\")",
        "print(chat([{\"role\": \"user\", \"content\": \"...\"}], max_new_tokens=64)[0][\"generated_text\"][-1][\"content\"])",
        "```", "",
        "## Citation", "", "```bibtex", BIBTEX, "```", "", f"Published numbers this reproduces: {CITATION}.", "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))  # parses and checks the metadata back


def write_dataset_card(dataset_path: Path, *, run_config: RunConfig) -> Path:
    """Write the dataset card of ``<run_dir>/distill/<entry>.jsonl`` beside it (``<entry>.card.md``)."""
    path = dataset_card_path(dataset_path)
    dataset_card(dataset_path, run_config=run_config).save(path)
    return path


def dataset_card(dataset_path: Path, *, run_config: RunConfig):
    """The dataset card ``write_dataset_card`` writes, as a ``huggingface_hub.DatasetCard`` (nothing written)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    dataset_path = Path(dataset_path)
    entry, run_dir = dataset_path.stem, dataset_path.parent.parent
    spec = _spec(run_config, entry)
    rows = sum(1 for line in dataset_path.read_text(encoding="utf-8").splitlines() if line.strip())
    base = base_model_id(run_config.model) or run_config.model
    data = DatasetCardData(
        pretty_name=f"{_label(spec.method, run_config)} distillation data for {run_config.task.name}",
        task_categories=["text-generation"],
        tags=["sys2distill", "system-2-distillation", "synthetic", spec.method, run_config.task.name],
        size_categories=["n<1K" if rows < 1000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}],
    )
    body = [
        f"# {data.pretty_name}", "",
        f"{rows} prompt–completion records in TRL's conversational format: the System 1 prompt of an unlabeled "
        f"`{run_config.task.name}` input, and as completion the final answer `{base}` reached with "
        f"{_label(spec.method, run_config)}, its intermediate reasoning dropped, kept only when its samples agreed "
        "(*Distilling System 2 into System 1*, Yu et al. 2024, "
        f"[arXiv:2407.06023](https://arxiv.org/abs/2407.06023), Sec. 3). Made with sys2distill.", "",
        "## How it was made", "", "| | |", "|---|---|", f"| model | `{base}` |", *_making_of(run_dir, run_config, entry), "",
        "## Fields", "",
        "- `id`: the input's id in the task's train split",
        "- `prompt`: `[{role: user, content}]`, the System 1 prompt",
        "- `completion`: `[{role: assistant, content}]`, the distillation target",
        "- `metadata`: `method`, the voted `answer`, `votes` per answer, `agreement` (winner's share), "
        "`source_trace_ids`, `target`", "",
        "Load it with `datasets.load_dataset(\"json\", data_files=\"data/train.jsonl\")` or by its Hub id; "
        "train on it with TRL's `SFTTrainer` (completion-only loss).", "",
        "## Citation", "", "```bibtex", BIBTEX, "```", "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def results_table(run_dir: Path) -> str | None:
    """The run's main results table (the first table of ``results.md``), None before the report stage."""
    results = Path(run_dir) / "results.md"
    return first_markdown_table(results.read_text(encoding="utf-8")) if results.is_file() else None


def write_model_cards(run_dir: Path, run_config: RunConfig) -> list[Path]:
    """(Re)write the card of every finished checkpoint of a run, with ``results.md``'s table when it exists."""
    run_dir, table = Path(run_dir), results_table(run_dir)
    return [write_model_card(run_dir / "train" / entry, run_config=run_config, results_markdown_table=table,
                             train_record=json.loads((run_dir / "train" / entry / rundir.DONE).read_text()))
            for entry in trained_entries(run_dir, run_config)]


def trained_entries(run_dir: Path, run_config: RunConfig) -> list[str]:
    return [s.key for s in run_config.distill.specs if (Path(run_dir) / "train" / s.key / rundir.DONE).is_file()]


# -- push ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """One Hub repo and the files that go into it: (local path, path in the repo)."""

    repo_id: str
    repo_type: str  # "model" or "dataset"
    files: tuple[tuple[Path, str], ...]


def run_of(path: str | Path) -> tuple[Path, RunConfig]:
    """The run folder and its config, from either the folder a run wrote or the config it ran with."""
    if Path(path).is_file() or not Path(path).exists():
        cfg = load_config(path)  # a config file or a shipped config's name
        if not (cfg.path / rundir.CONFIG).is_file():
            raise UserError(f"config {path} has not run yet (no run folder {cfg.path}): run `sys2distill run {path}` first")
        return cfg.path, load_config(cfg.path)
    return Path(path), load_config(path)


def pick_entry(run_dir: Path, run_config: RunConfig, entry: str | None) -> str:
    """The distill entry to push: ``entry``, or the run's only finished one."""
    trained = trained_entries(run_dir, run_config)
    if not trained:
        raise UserError(f"{run_dir} has no finished checkpoint: run the train stage first")
    if entry is None and len(trained) > 1:
        raise UserError(f"{run_dir} has {len(trained)} distilled models ({', '.join(trained)}): pass --entry NAME")
    if entry is not None and entry not in trained:
        raise UserError(f"no finished checkpoint for entry {entry!r} in {run_dir}: choose from {', '.join(trained)}")
    return entry or trained[0]


def upload_plan(run_dir: Path, repo: str, entry: str) -> list[Upload]:
    """Which files go to which repo: the checkpoint with its card to model repo ``repo``; its training data,
    dataset card and the run's config to dataset repo ``repo``. Reads the folder, sends nothing."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise UserError(f"--repo {repo!r} is not a Hub repo id: write ORG/NAME (your user name or organisation)")
    run_dir = Path(run_dir)
    checkpoint, data = run_dir / "train" / entry, run_dir / "distill" / f"{entry}.jsonl"
    if not data.is_file():
        raise UserError(f"{data} is missing: the checkpoint's training data goes with it (rerun the filter stage)")
    # Everything the trainer saved (weights, tokenizer, card, train_log.jsonl, DONE.json, TensorBoard runs/,
    # which the Hub shows as training metrics), except intermediate checkpoints from sft_args.save_strategy.
    model_files = tuple((f, f.relative_to(checkpoint).as_posix()) for f in sorted(checkpoint.rglob("*"))
                        if f.is_file() and not f.relative_to(checkpoint).parts[0].startswith("checkpoint-"))
    data_files = ((dataset_card_path(data), CARD), (data, "data/train.jsonl"),
                  (run_dir / rundir.CONFIG, "sys2distill_config.yaml"))
    return [Upload(repo, "model", model_files), Upload(repo, "dataset", data_files)]


def network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failed connection raises in whichever HTTP client the installed huggingface_hub uses
    (``httpx`` until 1.x, ``httpx2`` in 2.x, ``requests`` before both), besides ``OSError``."""
    import importlib

    found: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "TransportError"), ("httpx2", "TransportError"), ("requests", "ConnectionError"),
                         ("requests", "Timeout")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def push(run: str | Path, repo: str, entry: str | None = None, private: bool = False) -> list[str]:
    """Upload a run's distilled checkpoint and its dataset to the Hub (``sys2distill push``); returns their URLs.

    ``run`` is the run folder or the config it ran with. The cards are made with the results table and the
    repo id and checked by the Hub's own validator, in memory: publishing never changes a file of the run
    folder (a stage's outputs are its record's). Then one commit per repo (``HfApi.create_repo`` +
    ``create_commit``)."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    run_dir, run_config = run_of(run)
    entry = pick_entry(run_dir, run_config, entry)
    plan = upload_plan(run_dir, repo, entry)  # every user mistake is caught before the network
    if constants.HF_HUB_OFFLINE:
        raise UserError("HF_HUB_OFFLINE is set: unset it to push (the upload needs the Hub)")
    if get_token() is None:
        raise UserError("no Hugging Face token: run `hf auth login` or set HF_TOKEN to a token with write access")
    cards = {dataset_card_path(run_dir / "distill" / f"{entry}.jsonl"):
             dataset_card(run_dir / "distill" / f"{entry}.jsonl", run_config=run_config),
             run_dir / "train" / entry / CARD:
             model_card(run_dir / "train" / entry, run_config=run_config, repo=repo, results_markdown_table=results_table(run_dir),
                        train_record=json.loads((run_dir / "train" / entry / rundir.DONE).read_text()))}
    api, urls = HfApi(), []
    try:
        for card in cards.values():
            card.validate()
        for up in plan:
            urls.append(str(api.create_repo(up.repo_id, repo_type=up.repo_type, private=private, exist_ok=True)))
            api.create_commit(up.repo_id, repo_type=up.repo_type, commit_message=f"sys2distill push of {entry}",
                              operations=[CommitOperationAdd(path_in_repo=dst, path_or_fileobj=str(cards[src]).encode()
                                                             if src in cards else str(src)) for src, dst in up.files])
    except (HfHubHTTPError, ValueError) as e:  # ValueError: the Hub's card validator said no
        raise UserError(f"the Hub refused the push: {str(e).strip().splitlines()[0]}") from None
    except network_errors() as e:  # DNS failure, refused connection, timeout
        raise UserError(f"could not reach the Hugging Face Hub ({type(e).__name__}): check the network, or push later; "
                        "nothing in the run folder was changed") from None
    return urls

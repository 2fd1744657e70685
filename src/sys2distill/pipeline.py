"""The pipeline of arXiv 2407.06023 Sec. 3 as resumable stages over one run folder.

generate  System 2 traces on unlabeled train inputs  → generate/<method>.jsonl
filter    consistency filter + distillation dataset   → filter/<method>.jsonl, distill/<method>.jsonl
train     fine-tune the same model on each dataset    → train/<method>/ (DONE.json when complete)
evaluate  System 1, System 2 and distilled on test    → evaluate/*.jsonl, evaluate/rows.jsonl
report    the paper-style table                       → results.json, results.md

Each stage declares the config keys it reads (``STAGE_READS``) and runs seeing only those
(``configview``); its record, ``<stage>/STAGE.json``, keeps their values and lists the files it
wrote. A rerun skips a stage whose values and files are unchanged, resumes one that was cut off
or asked for more of the same work, repairs one whose files were damaged (regenerating only what
is missing, and recording what in the record's ``repaired``), and refuses one whose values
changed, with a one-line error, before anything is written. One process at a time holds the run
folder (``runlock``).
"""

from __future__ import annotations

import copy
import gc
import json
import platform
import os
import resource
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sys2distill import backends, filters, manifest, methods, tasks
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.backends.build import build_backend, resolved_dtype
from sys2distill.config import DistillSpec, RunConfig, dump_config
from sys2distill.configview import ConfigView, pick
from sys2distill.dataset import build_records
from sys2distill.errors import UserError
from sys2distill.evaluator import FILTER_CHECK, ROWS, EvalRow, FilterCheck, check_filter, score_rows
from sys2distill.adaptive import StopRule
from sys2distill.generation import load_traces, run_method
from sys2distill.hub import distilled_model_name, write_dataset_card, write_model_card, write_model_cards
from sys2distill.models import check_model_name, model_identity
from sys2distill.plot import PLOT_FILE
from sys2distill.records import Example, FilterDecision, Trace, read_records, write_jsonl
from sys2distill.registry import lookup
from sys2distill.report import RESULTS_JSON, Results, build_results, write_results
from sys2distill.runlock import run_lock
from sys2distill.tracking import Tracker, check_installed, stage_tokens
from sys2distill.trainer import DONE

STAGES = ("generate", "filter", "train", "evaluate", "report")


@dataclass(frozen=True)
class Reads:
    """The config slice a stage reads, and the run-folder paths it writes.

    ``keys``: its outputs depend on their values; a finished stage made with other values is refused.
    ``extends``: they set how much of the same work it does (sample j of an input is the same draw
    whatever the number of samples), so a change resumes the stage to the new amount.
    ``neutral``: read only for how the work runs (batch sizes, the server, write chunking, where metrics
    go); never fingerprinted, also where it lies inside a declared section (``train.report_to``).
    A stage's fingerprint is its keys and extends plus those of every stage before it, and it may read
    all of them (a model card describes how its data were made). ``writes`` may hold glob patterns; a
    file that a later stage rewrites is that stage's (the report refreshes each model card).
    """

    keys: tuple[str, ...]
    writes: tuple[str, ...]
    extends: tuple[str, ...] = ()
    neutral: tuple[str, ...] = ()


_SAMPLING = ("generation.temperature", "generation.top_p", "generation.max_tokens", "generation.seed")
_AMOUNT = ("generation.num_samples", "generation.adaptive", "generation.adaptive_min_samples",
           "generation.adaptive_confidence", "generation.adaptive_rule")
# Building and prompting a method (a chain's steps included), and running a backend: only the dtype
# changes what a model generates.
_MODEL = ("model", "task", "backend.dtype", "prompts", "method_options", "chains")
_ENGINE = ("backend",)
STAGE_READS = {
    "generate": Reads(keys=(*_MODEL, *_SAMPLING), extends=("distill.methods", *_AMOUNT),
                      neutral=(*_ENGINE, "generation.chunk_sequences"), writes=("generate", "data/train.jsonl")),
    "filter": Reads(keys=(*_MODEL, "distill.methods", "distill.target", "filter", *_AMOUNT), neutral=_ENGINE,
                    writes=("filter", "distill")),
    # on_empty decides whether an entry the filter left empty stops the run or is skipped: no model changes;
    # name and report_to only label and route the training metrics.
    "train": Reads(keys=("model", "distill.methods", "train"), neutral=("distill.on_empty", "name", "train.report_to"),
                   writes=("train",)),
    "evaluate": Reads(keys=(*_MODEL, "distill.methods", "evaluate", *_SAMPLING, "generation.num_samples"),
                      neutral=(*_ENGINE, "generation.chunk_sequences"), writes=("evaluate", "data/test.jsonl")),
    # The report copies the whole config into results.json; every value that changes a number is in an
    # earlier stage's fingerprint, which the report's includes.
    "report": Reads(keys=("model", "task", "distill.methods"), neutral=tuple(RunConfig.model_fields),
                    writes=("results.json", "results.md", PLOT_FILE, "train/*/README.md")),
}
# Adaptive stopping on the majority filter's decision reads the filter's settings (StopRule).
_STOP_ON_FILTER = ("filter.name", "filter.enabled", "filter.min_agreement")


def stage_reads(stage: str, cfg: RunConfig) -> Reads:
    """``STAGE_READS[stage]``, with the filter keys generation reads when it stops on the filter's decision."""
    reads = STAGE_READS[stage]
    g = cfg.generation
    if stage == "generate" and g.adaptive and g.adaptive_rule in ("exact", "predictive"):
        reads = replace(reads, extends=reads.extends + _STOP_ON_FILTER)
    return reads


_ABSENT = object()


def _saved(config: dict, dotted: str):
    """The value a stage record holds for ``a.b.c``: a key of its own, or inside a whole section that an
    older version recorded (``generation`` rather than ``generation.temperature``)."""
    if dotted in config:
        return config[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        section = config.get(".".join(parts[:i]), _ABSENT)
        if isinstance(section, dict):
            try:
                return pick(section, ".".join(parts[i:]))
            except (KeyError, TypeError):
                return _ABSENT
    return _ABSENT


def _same(saved, new, default) -> bool:
    """Whether a saved fingerprint value matches the current one. A key the config gained after the
    run folder was made (absent from ``saved``) matches while it holds its default, so adding a
    config field does not invalidate every existing run."""
    if saved is _ABSENT:
        return new == default
    if isinstance(saved, dict) and isinstance(new, dict):
        default = default if isinstance(default, dict) else {}
        return set(saved) <= set(new) and all(_same(saved.get(k, _ABSENT), v, default.get(k, _ABSENT))
                                              for k, v in new.items())
    return saved == new


@dataclass
class _Plan:
    """What a rerun does with one stage: skip it, or run it (resuming from what is on disk), first setting
    aside the ``damaged`` files of a finished one; ``repaired`` carries what an interrupted repair recorded."""

    run: bool
    damaged: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, dict] = field(default_factory=dict)


def _read_json(path: Path) -> dict | None:
    """A JSON object file's contents; None when it is missing or is not one (damaged)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Repair(BaseModel):
    """What a repair did to one damaged file (``repaired`` in a stage record)."""

    model_config = ConfigDict(extra="forbid")
    problem: Literal["missing", "changed"]
    samples_kept: int | None = None  # a trace file: intact samples kept ...
    samples_regenerated: int | None = None  # ... and samples drawn again once the stage ran
    remade: bool | None = None  # any other file: deleted and made again


class _StageRecord(BaseModel):
    """The shape of ``<stage>/STAGE.json``; a record not of this shape is damaged."""

    model_config = ConfigDict(extra="allow")  # timings and the like
    config: dict[str, Any]
    done: bool = False
    files: dict[str, tuple[int, int, str]] = {}  # name → size, mtime_ns, sha256 (manifest.record)
    repaired: dict[str, _Repair] = {}


def _stage_record(path: Path) -> dict | None:
    """A stage record's contents; None when it is missing or damaged."""
    saved = _read_json(path)
    try:
        _StageRecord.model_validate(saved)
    except ValidationError:
        return None
    return saved


def _write_atomic(path: Path, text: str) -> None:
    """Write + rename under a per-process name: readers never see half a file, and every rank of
    ``torchrun -m sys2distill train`` may write the same record at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    """The versions that made a result, for its report."""
    import importlib.metadata as md

    from sys2distill import __version__

    out = {"sys2distill": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def distilled_label(method_label: str) -> str:
    return "Distill System 1" if method_label == "System 1" else f"Distilled {method_label}"


class Pipeline:
    """One run: a config, a run folder, and the objects built from them on demand."""

    def __init__(self, cfg: RunConfig, backend: Backend | None = None, loaded_base=None):
        self._cfg = cfg
        self._view: ConfigView | None = None  # the running stage's slice of the config
        self.dir = cfg.path
        # Fail fast: every name in the config is checked before any work starts.
        task_cls = lookup(tasks.REGISTRY, cfg.task.name, "task")
        for name in cfg.chains:
            if name in methods.REGISTRY:
                raise UserError(f"chain {name!r} has the name of a built-in method: rename it under `chains:`")
        for m in {*cfg.prompts, *cfg.method_options} & set(cfg.chains):
            raise UserError(f"chain {m!r} has its prompts and options in its steps: edit them under `chains:`, not in "
                            "`prompts:` or `method_options:`")
        method_names = {*(s.method for s in cfg.distill.specs), *cfg.evaluate.systems, *cfg.prompts, *cfg.method_options}
        for m in method_names:
            lookup({**methods.REGISTRY, **cfg.chains}, m, "method or chain" if cfg.chains else "method")
        for f in [cfg.filter, *(s.filter for s in cfg.distill.specs if s.filter)]:
            lookup(filters.REGISTRY, f.name, "filter")
        self.backend_cls = lookup(backends.REGISTRY, cfg.backend.name, "backend")
        if loaded_base is None:
            check_model_name(cfg.model)
        check_installed(cfg.train.report_to)
        if cfg.train.sft_args:  # a typo in an SFTConfig field fails now, not after hours of generation
            from sys2distill.trainer import sft_config

            sft_config(cfg.train, self.dir / "train")
        t = cfg.task
        try:
            self._task = task_cls(train_size=t.train_size, test_size=t.test_size, seed=t.seed, source=t.source, **t.options)
        except TypeError as e:
            raise UserError(f"bad task.options for {t.name!r}: {e}".replace("__init__() ", "")) from None
        # Fail fast, before any model is loaded: bad data, templates, chains and prompt overrides.
        self.task.check_data()
        for m in method_names:
            self.method(m)
        self._backend = backend
        self._loaded_base = loaded_base  # (model, tokenizer) for tests that build a tiny model in-process
        self.timings: dict[str, dict] = {}
        self.tracker = Tracker(cfg.train.report_to, self.dir, cfg.name)

    @property
    def cfg(self) -> RunConfig:
        """The run's config; while a stage runs, that stage's view of it (its declared keys only)."""
        return self._view if self._view is not None else self._cfg  # type: ignore[return-value]

    @property
    def task(self):
        """The task built from the ``task`` section: a stage may use it only if it declares that section."""
        if self._view is not None:
            self._view.task  # noqa: B018 -- raises UndeclaredConfigKey for a stage that does not declare it
        return self._task

    # -- shared pieces ---------------------------------------------------------------------
    def method(self, name: str):
        if name in self.cfg.chains:
            from sys2distill.methods.chain import Chain

            return Chain(name, self.cfg.chains[name], self.task)
        return methods.REGISTRY[name](self.task, self.cfg.prompts.get(name), self.cfg.method_options.get(name))

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = build_backend(self.cfg.backend, self.cfg.model, self.dir, loaded=self._loaded_base)
        return self._backend

    def examples(self, split: str) -> list[Example]:
        """The split's examples, frozen in the run folder the first time they are made.

        ``data/TASK.json`` records the task config and each frozen file's sha256. Traces, decisions and
        scores are keyed by example id, so a frozen file that is damaged or gone (or not recorded) is
        rebuilt from the task and used only if it is byte-identical to the one recorded (or on disk).
        """
        path, marker = self.dir / "data" / f"{split}.jsonl", self.dir / "data" / "TASK.json"
        task = self.cfg.task.model_dump()
        saved = _read_json(marker)  # None when missing or unreadable: the data are then checked against the task
        if saved is not None and "sha256" not in saved:
            saved = {"task": saved, "sha256": {}}  # written before the digests: the task config alone
        if saved is not None and not isinstance(saved["sha256"], dict):
            saved = None  # damaged
        if saved is not None and saved.get("task") != task:
            raise UserError(f"run folder {self.dir} holds data made with a different task config: "
                            "pass --force generate to start over, or set name=<new run name>")
        digests = dict(saved["sha256"]) if saved else {}
        if not (path.is_file() and manifest.sha256(path) == digests.get(split)):
            tmp = path.with_name(path.name + ".tmp")
            write_jsonl(tmp, self.task.load(split))
            reference = digests.get(split) or (manifest.sha256(path) if path.is_file() else None)
            if reference is not None and manifest.sha256(tmp) != reference:
                tmp.unlink()
                raise UserError(f"{path} is damaged or gone, and the task now builds different {split} data (did its "
                                "source change?): restore the file, or pass --force generate to start over")
            os.replace(tmp, path)
            digests[split] = manifest.sha256(path)
            _write_atomic(marker, json.dumps({"task": task, "sha256": digests}))
        return read_records(path, Example)

    def sampling(self) -> SamplingParams:
        g = self.cfg.generation
        return SamplingParams(n=g.num_samples, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=g.seed)

    # -- bookkeeping -----------------------------------------------------------------------
    def view(self, stage: str) -> ConfigView:
        """The config as ``stage`` sees it while it runs: its fingerprint's keys and its neutral ones, nothing else."""
        return ConfigView(self._cfg, frozenset((*self._fingerprint(stage), *stage_reads(stage, self._cfg).neutral)),
                          f"'{stage}' stage")

    def _fingerprint(self, stage: str) -> dict:
        """The values of the keys ``stage``'s outputs depend on: its own, and those of every stage before it."""
        dump, out = self._cfg.model_dump(), {}
        for s in STAGES[: STAGES.index(stage) + 1]:
            r = stage_reads(s, self._cfg)
            for k in (*r.keys, *r.extends):
                value = pick(dump, k)
                for n in r.neutral:
                    if n.startswith(k + ".") and isinstance(value, dict):  # e.g. train.report_to inside train
                        value = {kk: v for kk, v in value.items() if kk != n[len(k) + 1:]}
                out.setdefault(k, value)
        if out.get("backend.dtype") == "auto":  # what it computes in here: auto runs bf16 on one machine, fp32 on another
            out["backend.dtype"] = resolved_dtype(self._cfg.backend)
        return out

    def _marker(self, stage: str) -> Path:
        return self.dir / stage / "STAGE.json"

    def _outputs(self, stage: str) -> list[str]:
        """The files ``stage`` wrote and no later stage rewrites."""
        later = {f for s in STAGES[STAGES.index(stage) + 1:] for f in manifest.files_under(self.dir, STAGE_READS[s].writes)}
        return [f for f in manifest.files_under(self.dir, STAGE_READS[stage].writes, skip=(f"{stage}/STAGE.json",))
                if f not in later]

    def _write_marker(self, stage: str, **extra) -> None:
        _write_atomic(self._marker(stage), json.dumps({"config": self._fingerprint(stage), **extra}, indent=1))

    def _plan(self, stage: str) -> _Plan:
        """What a rerun does with ``stage``, from its record; a rerun that would mix values is a ``UserError``.

        The record is written when a stage starts, so a stage cut off mid-way is resumed, and never
        with other values once it has written something (with nothing written, as after a failed
        start, it starts again with the new ones). A finished stage is skipped while its values and
        files are unchanged; it resumes when only ``extends`` keys changed, and is repaired when a
        file it wrote is damaged or gone. A damaged or deleted record is an error unless another
        stage's record shows the outputs were made with the current values.
        """
        marker = self._marker(stage)
        # Evidence that the stage has computed something: files only it writes. Not the frozen data (the
        # task's, rebuilt identically by ``examples``), nor files an earlier stage writes first (model cards).
        earlier = {f for s in STAGES[:STAGES.index(stage)] for f in manifest.files_under(self.dir, STAGE_READS[s].writes)}
        computed = [f for f in self._outputs(stage) if f not in earlier and not f.startswith("data/")]
        saved = _stage_record(marker)
        new, default = self._fingerprint(stage), RunConfig().model_dump()
        if saved is None:
            # A lost record: another stage's record may hold all of this stage's values (a later stage's
            # does, fingerprints being cumulative; the report's are all in evaluate's). If it holds the
            # current ones, the outputs were made with them and are resumed like a cut-off stage's.
            others = [r for r in map(_stage_record, map(self._marker, STAGES)) if r is not None]
            if not computed or any(all(_saved(r["config"], k) is not _ABSENT and _same(_saved(r["config"], k), v, None)
                                       for k, v in new.items()) for r in others):
                return _Plan(run=True)
            raise UserError(f"{marker} is {'damaged' if marker.exists() else 'missing'}, so the values {stage}'s outputs "
                            f"were made with are unknown: restore it, or redo the stage with --force {stage} (Python: "
                            f"run(force=('{stage}',)))")
        changed = [k for k in new if not _same(_saved(saved["config"], k), new[k], pick(default, k))]
        refused = [k for k in changed if k not in stage_reads(stage, self._cfg).extends]
        done = saved.get("done") is True
        if refused and (done or computed):
            raise UserError(f"run folder {self.dir} has a {'finished' if done else 'started'} '{stage}' stage made with "
                            f"different {', '.join(refused)}: redo it with --force {stage} (Python: run(force=('{stage}',))), "
                            "or start a new run folder with name=<new run name>")
        if refused:
            return _Plan(run=True)
        repaired = saved.get("repaired") or {}
        if not done:
            return _Plan(run=True, repaired=repaired)
        damaged, current = manifest.damage(self.dir, saved.get("files") or {})  # older records list no files: trusted
        if damaged or changed:
            return _Plan(run=True, damaged=damaged, repaired=repaired)
        if current != saved.get("files", {}):  # intact, with new times (a copied folder): hash them once only
            _write_atomic(marker, json.dumps({**saved, "files": current}, indent=1))
        return _Plan(run=False)

    def _set_aside(self, damaged: dict[str, str]) -> dict[str, dict]:
        """Prepare a finished stage's damaged files for its rerun; returns what was done, per file.

        A trace file (``run_method``'s JSONL under generate/ or evaluate/) keeps its intact samples,
        and the stage draws only the missing ones again (sample j is seeded alone: the same draw).
        Any other file is deleted and remade; a checkpoint folder is whole or absent, so its
        ``DONE.json`` goes too and the model is trained again.
        """
        done = {}
        for name, problem in damaged.items():
            path = self.dir / name
            traces = name.endswith(".jsonl") and name.count("/") == 1 and name.split("/")[0] in ("generate", "evaluate")
            kept = sum(map(len, load_traces(path).values())) if traces else 0  # rewrites the file with its intact samples
            if kept:
                done[name] = {"problem": problem, "samples_kept": kept}
            else:  # not a trace file (evaluate's rows), or nothing of it left: remade whole
                path.unlink(missing_ok=True)
                (path.parent / DONE).unlink(missing_ok=True)
                done[name] = {"problem": problem, "remade": True}
        return done

    def _count_regenerated(self, repaired: dict[str, dict]) -> None:
        """Complete a repair record once its stage has run: how many samples each trace file drew again."""
        for name, entry in repaired.items():
            path = self.dir / name
            if "samples_kept" in entry and path.exists():  # the stage appended to its intact samples, one per line
                lines = sum(1 for line in path.read_bytes().splitlines() if line.strip())
                entry["samples_regenerated"] = lines - entry["samples_kept"]

    def _clear(self, stages: tuple[str, ...]) -> None:
        """Delete what ``stages`` wrote, their records included (``--force``). The frozen data go only with
        ``generate``: every stage after it keys its records by their example ids."""
        for stage in stages:
            shutil.rmtree(self.dir / stage, ignore_errors=True)
            for path in (p for rel in STAGE_READS[stage].writes if not rel.startswith("data/") for p in self.dir.glob(rel)):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if "generate" in stages:
            shutil.rmtree(self.dir / "data", ignore_errors=True)

    def run(self, stages: tuple[str, ...] = STAGES, force: tuple[str, ...] = ()) -> Results | None:
        """Run ``stages`` in pipeline order, skipping finished ones; ``force`` redoes a stage and all after it.

        Returns the run's ``Results`` once it has a report (also when every stage was already done)."""
        unknown = [s for s in [*stages, *force] if s not in STAGES]
        if unknown:
            raise UserError(f"unknown stage {unknown[0]!r}: choose from {', '.join(STAGES)}")
        with run_lock(self.dir):
            self._run(stages, force)
        try:
            return Results.load(self.dir) if (self.dir / RESULTS_JSON).exists() else None
        except ValidationError:  # damaged, and the report (which would repair it) was not among the stages run
            return None

    def _run(self, stages: tuple[str, ...], force: tuple[str, ...]) -> None:
        first_forced = min((STAGES.index(s) for s in force), default=len(STAGES))
        # Every stage is decided before anything is written: a refused rerun leaves the run folder, its
        # config.yaml included, as it was. Forced stages, and those after them (computed from their
        # outputs), start afresh.
        plans = {s: self._plan(s) if i < first_forced else _Plan(run=True) for i, s in enumerate(STAGES) if s in stages}
        self._clear(STAGES[first_forced:])
        ran = False
        for stage, plan in plans.items():
            if plan.run:
                if not ran:  # config.yaml: the config of the last run that ran a stage
                    _write_atomic(self.dir / "config.yaml", dump_config(self._cfg))
                    ran = True
                self._execute(stage, plan)

    def _execute(self, stage: str, plan: _Plan) -> None:
        # Damaged files are set aside before the record says "started", so a run killed in between
        # finds them damaged again and sets them aside again.
        repaired = {**plan.repaired, **self._set_aside(plan.damaged)}
        extra = {"repaired": repaired} if repaired else {}
        self._write_marker(stage, done=False, **extra)
        start = time.perf_counter()
        self._view = self.view(stage)
        try:
            getattr(self, f"stage_{stage}")()
        finally:
            self._view = None
        self._count_regenerated(repaired)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
        self.timings[stage] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_gib": round(peak_gib, 2)}
        self._write_marker(stage, done=True, **self.timings[stage], files=manifest.record(self.dir, self._outputs(stage)),
                           **extra)
        self.tracker.log_stage(stage, self.timings[stage])

    # -- stages ----------------------------------------------------------------------------
    def num_samples(self, method: str) -> int:
        """Samples generated per input for ``method``: the most any distilled model needs.

        Sample j of an input is seeded by (seed, prompt, j) alone, so a model distilled from
        fewer samples uses the first ones: ablations cost no extra generation.
        """
        g = self.cfg.generation.num_samples
        return max(s.num_samples or g for s in self.cfg.distill.specs if s.method == method)

    def make_filter(self, spec: DistillSpec):
        f = spec.filter or self.cfg.filter
        cls = lookup(filters.REGISTRY, f.name, "filter")
        try:
            return cls(min_agreement=f.min_agreement, enabled=f.enabled, **f.options)
        except TypeError as e:
            raise UserError(f"bad filter.options for {f.name!r}: {e}".replace("__init__() ", "")) from None

    def stop_rule(self, method: str) -> StopRule:
        g, n = self.cfg.generation, self.num_samples(method)
        if not g.adaptive:
            return StopRule.fixed(n)
        if g.adaptive_rule in ("exact", "predictive"):
            f = self.cfg.filter
            if f.name != "majority" or not f.enabled:
                raise UserError(f"generation.adaptive_rule={g.adaptive_rule} needs the majority filter (filter.name=majority, "
                                "enabled): it stops on that filter's decision; use adaptive_rule=beta otherwise")
            return StopRule(n, g.adaptive_min_samples, g.adaptive_confidence, rule=g.adaptive_rule, threshold=f.min_agreement)
        return StopRule(n, g.adaptive_min_samples, g.adaptive_confidence)

    def stage_generate(self) -> None:
        train = self.examples("train")
        for name in dict.fromkeys(s.method for s in self.cfg.distill.specs):
            n = self.num_samples(name)
            run_method(self.method(name), train, self.backend(), replace(self.sampling(), n=n),
                       self.dir / "generate" / f"{name}.jsonl", self.cfg.generation.chunk_sequences,
                       desc=f"generate {name} ×{n}{' (adaptive)' if self.cfg.generation.adaptive else ''}",
                       stop=self.stop_rule(name))

    def stage_filter(self) -> None:
        train = self.examples("train")
        for spec in self.cfg.distill.specs:
            traces = load_traces(self.dir / "generate" / f"{spec.method}.jsonl")
            rule = self.stop_rule(spec.method)
            missing = [ex.id for ex in train if not rule.done([t.answer for t in traces.get(ex.id, [])])]
            if missing:
                raise UserError(f"generate/{spec.method}.jsonl lacks samples for {len(missing)} inputs (e.g. {missing[0]}): "
                                "run the generate stage first")
            n = spec.num_samples or self.cfg.generation.num_samples
            traces = {ex.id: traces[ex.id][:n] for ex in train}
            filt = self.make_filter(spec)
            decisions = filt.apply(train, traces, self.backend() if filt.needs_backend else None)
            write_jsonl(self.dir / "filter" / f"{spec.key}.jsonl", decisions)
            records = build_records(train, traces, decisions, self.method("system1"), self.cfg.distill.target)
            write_jsonl(self.dir / "distill" / f"{spec.key}.jsonl", records)
            write_dataset_card(self.dir / "distill" / f"{spec.key}.jsonl", run_config=self.cfg)

    def stage_train(self) -> None:
        from sys2distill.trainer import train

        for spec in self.cfg.distill.specs:
            out = self.dir / "train" / spec.key
            if (out / "DONE.json").exists():
                continue
            data = self.dir / "distill" / f"{spec.key}.jsonl"
            if self.cfg.distill.on_empty == "skip" and data.is_file() and not data.read_text(encoding="utf-8").strip():
                out.mkdir(parents=True, exist_ok=True)
                (out / "SKIPPED.json").write_text(json.dumps({"reason": "the filter kept no input"}))
                continue
            loaded = None
            if self._loaded_base is not None:  # tests: train a copy of the in-process model
                import copy

                loaded = (copy.deepcopy(self._loaded_base[0]), self._loaded_base[1])
            train(self.dir / "distill" / f"{spec.key}.jsonl", self.cfg.model, out, self.cfg.train, loaded=loaded,
                  model_name=distilled_model_name(self.cfg.model, spec.key), run_name=f"{self.cfg.name}/{spec.key}")
            if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 wrote the checkpoint
                write_model_card(out, run_config=self.cfg, train_record=json.loads((out / "DONE.json").read_text()),
                                 results_markdown_table=None)
            gc.collect()

    def stage_evaluate(self) -> None:
        """Greedy answers of every system on the test split, scored once into ``evaluate/rows.jsonl``."""
        ev, test = self.cfg.evaluate, self.examples("test")
        greedy = SamplingParams(n=1, temperature=0.0, max_tokens=ev.max_tokens)
        out, chunk = self.dir / "evaluate", self.cfg.generation.chunk_sequences
        base = model_identity(self.cfg.model)
        rows, voted, greedy_traces = [], {}, {}
        for name in ev.systems:
            m = self.method(name)
            traces = greedy_traces[name] = run_method(m, test, self.backend(), greedy, out / f"{name}.jsonl", chunk,
                                                      desc=f"evaluate {name}")
            voted[name] = self._kvote_samples(name, m, self.backend(), test)
            rows += score_rows(self.task, test, traces, system=name, label=m.label, method=name, model=base,
                               kind="system1" if name == "system1" else "system2", ks=ev.k_votes, samples=voted[name])
        for spec in self.distilled_specs():
            m = self.method(spec.method)
            # System 2's majority answer on the *test* inputs, for the fidelity metric. The k-vote
            # samples are drawn the same way (sample j is seeded alone): reuse them when there are enough.
            n_fid = max(ev.fidelity_samples, 1)  # 0 falls back to one sample when System 2 was not evaluated
            if ev.fidelity_samples == 0 and spec.method in greedy_traces:
                system2 = greedy_traces[spec.method]
            elif voted.get(spec.method) and max(ev.k_votes) >= n_fid:
                system2 = {k: v[:n_fid] for k, v in voted[spec.method].items()}
            else:
                system2 = run_method(m, test, self.backend(), replace(self.sampling(), n=n_fid),
                                     out / f"fidelity_{spec.method}.jsonl", chunk, desc=f"fidelity samples {spec.method} ×{n_fid}")
            checkpoint = self.dir / "train" / spec.key
            distilled = build_backend(self.cfg.backend, str(checkpoint), self.dir, checkpoint=True)
            system = f"distill_{spec.key}"
            traces = run_method(self.method("system1"), test, distilled, greedy, out / f"{system}.jsonl",
                                chunk, desc=f"evaluate distilled {spec.key}")
            rows += score_rows(self.task, test, traces, system=system, kind="distilled", method="system1",
                               label=distilled_label(m.label) + (f" ({spec.name})" if spec.name else ""),
                               source=spec.method, model=str(checkpoint), ks=ev.k_votes, system2_samples=system2,
                               samples=self._kvote_samples(system, self.method("system1"), distilled, test))
            del distilled
            gc.collect()
        write_jsonl(out / ROWS, rows)
        labeled = self.train_labels()
        if labeled is not None:
            checks = [c for spec in self.cfg.distill.specs for c in check_filter(
                self.task, labeled, spec.key, read_records(self.dir / "filter" / f"{spec.key}.jsonl", FilterDecision))]
            write_jsonl(out / FILTER_CHECK, checks)

    def train_labels(self) -> list[Example] | None:
        """The train inputs *with* labels, for the filter's precision only (the evaluator's to read); None
        when the task cannot rebuild them identically (then precision is not reported)."""
        task = copy.copy(self.task)
        task.reveal_train_labels = True
        try:
            labeled = task.load("train")
        except (UserError, OSError):  # a source whose files are gone: precision is optional
            return None
        frozen = self.examples("train")
        if [(e.id, e.question) for e in labeled] != [(e.id, e.question) for e in frozen] or any(e.answer is None for e in labeled):
            return None
        return labeled

    def distilled_specs(self) -> list[DistillSpec]:
        """The distill entries that have a model (``distill.on_empty: skip`` leaves out empty ones)."""
        return [s for s in self.cfg.distill.specs if not (self.dir / "train" / s.key / "SKIPPED.json").exists()]

    def _kvote_samples(self, system: str, method, backend: Backend, test: list[Example]) -> dict[str, list[Trace]] | None:
        """max(k) answers per test input drawn as in ``generation``, for the k-vote columns (None: k_votes is [1])."""
        ev = self.cfg.evaluate
        if max(ev.k_votes) == 1:  # the default [1]: the greedy table is the k=1 result
            return None
        params = replace(self.sampling(), n=max(ev.k_votes))
        return run_method(method, test, backend, params, self.dir / "evaluate" / f"kvote_{system}.jsonl",
                          self.cfg.generation.chunk_sequences, desc=f"k-vote samples {system} ×{params.n}")

    def stage_report(self) -> None:
        self.results = write_results(build_results(
            read_records(self.dir / "evaluate" / ROWS, EvalRow),
            decisions={spec.key: read_records(self.dir / "filter" / f"{spec.key}.jsonl", FilterDecision)
                       for spec in self.cfg.distill.specs},
            checks=read_records(self.dir / "evaluate" / FILTER_CHECK, FilterCheck)
            if (self.dir / "evaluate" / FILTER_CHECK).exists() else None,
            trained={spec.key: self._trained(spec.key) for spec in self.cfg.distill.specs},
            stages=self._stage_records(),
            info={"task": self.cfg.task.name, "model": model_identity(self.cfg.model), "metric": self.task.metric,
                  "extraction_rule": self.task.extraction_rule, "task_version": self.task.version,
                  "config": self.cfg.model_dump(), "versions": versions()}), self.dir)
        write_model_cards(self.dir, self.cfg)  # each checkpoint's card gets the results table

    def _trained(self, key: str) -> dict:
        done, skipped = self.dir / "train" / key / "DONE.json", self.dir / "train" / key / "SKIPPED.json"
        if done.exists():
            return {"done": json.loads(done.read_text())}
        return {"not_trained": json.loads(skipped.read_text())["reason"]} if skipped.exists() else {}

    def _stage_records(self) -> dict[str, dict]:
        """Wall time and peak memory of each finished stage, the tokens it generated, and what a rerun repaired."""
        out = {}
        for stage in ("generate", "filter", "train", "evaluate"):
            marker = self._marker(stage)
            m = json.loads(marker.read_text()) if marker.exists() else {}
            if m.get("done"):
                out[stage] = {"seconds": m["seconds"], "peak_rss_gib": m["peak_rss_gib"],
                              "generated_tokens": stage_tokens(self.dir, stage), "repaired": m.get("repaired") or {}}
        return out

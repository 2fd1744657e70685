"""What every stage works with, and what each declares: the run context and ``Reads``.

A stage is a module of this package with ``READS`` (the config keys its outputs depend on and the run-folder
paths it writes) and ``run(ctx)``. While it runs, ``ctx.cfg`` is the config as the stage sees it: its
declared keys and those of the stages before it, nothing else (``configview``), so a key read without
being declared fails every time the stage runs, in the tests first.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sys2distill import methods, rundir
from sys2distill.backends.base import Backend, SamplingParams
from sys2distill.backends.build import build_backend
from sys2distill.config import DistillSpec, RunConfig
from sys2distill.configview import ConfigView
from sys2distill.errors import UserError
from sys2distill.records import Example, jsonl_text, read_records
from sys2distill.tasks.base import Task


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


class RunContext:
    """One run's config, folder, task and backend, as the stages use them."""

    def __init__(self, cfg: RunConfig, task: Task, backend: Backend | None = None, loaded_base=None):
        self.full = cfg  # the whole config
        self.cfg: RunConfig | ConfigView = cfg  # what the running stage sees (set by the driver)
        self.dir = cfg.path
        self._task = task
        self._backend = backend
        self.loaded_base = loaded_base  # (model, tokenizer) for tests that build a tiny model in-process

    @property
    def task(self) -> Task:
        """The task built from the ``task`` section: a stage may use it only if it declares that section."""
        if isinstance(self.cfg, ConfigView):
            self.cfg.task  # noqa: B018 -- raises UndeclaredConfigKey for a stage that does not declare it
        return self._task

    def method(self, name: str):
        if name in self.cfg.chains:
            from sys2distill.methods.chain import Chain

            return Chain(name, self.cfg.chains[name], self.task)
        return methods.REGISTRY[name](self.task, self.cfg.prompts.get(name), self.cfg.method_options.get(name))

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = build_backend(self.cfg.backend, self.cfg.model, self.dir, loaded=self.loaded_base)
        return self._backend

    def sampling(self) -> SamplingParams:
        g = self.cfg.generation
        return SamplingParams(n=g.num_samples, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=g.seed)

    def examples(self, split: str) -> list[Example]:
        """The split's examples, frozen in the run folder the first time they are made.

        ``data/TASK.json`` records the task config and each frozen file's sha256. Traces, decisions and
        scores are keyed by example id, so a frozen file that is damaged or gone (or not recorded) is
        rebuilt from the task and used only if it is byte-identical to the one recorded (or on disk).
        """
        path, marker = self.dir / "data" / f"{split}.jsonl", self.dir / rundir.TASK
        task = self.cfg.task.model_dump()
        saved = rundir.read_json(marker)  # None when missing or unreadable: the data are then checked against the task
        if saved is not None and "sha256" not in saved:
            saved = {"task": saved, "sha256": {}}  # written before the digests: the task config alone
        if saved is not None and not isinstance(saved["sha256"], dict):
            saved = None  # damaged
        if saved is not None and saved.get("task") != task:
            raise UserError(f"run folder {self.dir} holds data made with a different task config: "
                            "pass --force generate to start over, or set name=<new run name>")
        digests = dict(saved["sha256"]) if saved else {}
        if not (path.is_file() and rundir.sha256(path) == digests.get(split)):
            text = jsonl_text(self.task.load(split)).encode("utf-8")
            reference = digests.get(split) or (rundir.sha256(path) if path.is_file() else None)
            if reference is not None and hashlib.sha256(text).hexdigest() != reference:
                raise UserError(f"{path} is damaged or gone, and the task now builds different {split} data (did its "
                                "source change?): restore the file, or pass --force generate to start over")
            rundir.write_atomic(path, text)
            digests[split] = rundir.sha256(path)
            rundir.write_atomic(marker, json.dumps({"task": task, "sha256": digests}))
        return read_records(path, Example)

    def train_labels(self) -> list[Example] | None:
        """The train inputs *with* labels, for the filter's precision and the gold control only; None when the
        task cannot rebuild them identically (then precision is not reported)."""
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

    def controls(self, spec: DistillSpec) -> list[str]:
        """The control models (``distill.controls``) of an entry: those of a System 2 entry, none of a System 1's."""
        return [] if self.method(spec.method).system1 else list(self.cfg.distill.controls)

    def control_path(self, stage: str, spec: DistillSpec, control: str) -> Path:
        """``distill/controls/<entry>-<control>.jsonl`` (its data) or ``train/controls/<entry>-<control>`` (its model)."""
        name = f"{spec.key}-{control}"
        return self.dir / stage / rundir.CONTROLS / (f"{name}.jsonl" if stage == "distill" else name)

    def distilled_specs(self) -> list[DistillSpec]:
        """The distill entries that have a model (``distill.on_empty: skip`` leaves out empty ones)."""
        return [s for s in self.cfg.distill.specs if not (self.dir / "train" / s.key / rundir.SKIPPED).exists()]

    def trained(self, key: str) -> dict:
        """``{"done": DONE.json}``, ``{"not_trained": reason}`` or ``{}`` for an entry's checkpoint folder."""
        done, skipped = self.dir / "train" / key / rundir.DONE, self.dir / "train" / key / rundir.SKIPPED
        if done.exists():
            return {"done": json.loads(done.read_text())}
        return {"not_trained": json.loads(skipped.read_text())["reason"]} if skipped.exists() else {}

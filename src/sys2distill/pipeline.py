"""The pipeline of arXiv 2407.06023 Sec. 3 as resumable stages over one run folder: the driver.

The stages are modules of ``sys2distill.stages`` (generate, filter, train, evaluate, report), each
declaring the config keys its outputs depend on and the files it writes. For every stage asked for, the
driver reads its record (``<stage>/STAGE.json``, ``rundir``) and decides before anything is written:
skip a stage whose values and files are unchanged, resume one that was cut off or asked for more of the
same work, repair one whose files were damaged (regenerating only what is missing, and recording and
printing what), and refuse one whose values changed, with one line. One process at a time holds the run
folder (``runlock``). While a stage runs it sees only its declared keys and those of the stages before it
(``configview``).
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from sys2distill import rundir, tasks
from sys2distill.backends.base import Backend
from sys2distill.config import DistillSpec, RunConfig, dump_config
from sys2distill.configview import ConfigView, pick
from sys2distill.errors import UserError
from sys2distill.generation import load_traces
from sys2distill.models import check_model_name
from sys2distill.report import Results
from sys2distill.runlock import run_lock
from sys2distill.stages import REGISTRY, STAGE_READS, STAGES, Reads, RunContext, fingerprint, stage_reads  # noqa: F401
from sys2distill.stages.filter import make_filter
from sys2distill.tracking import Tracker, check_installed
from sys2distill.validation import check_names, method_names

@dataclass
class _Plan:
    """What a rerun does with one stage: skip it, or run it (resuming from what is on disk), first setting
    aside the ``damaged`` files of a finished one; ``repaired`` carries what an interrupted repair recorded."""

    run: bool
    damaged: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, dict] = field(default_factory=dict)


class Pipeline:
    """One run: a config, a run folder, and the stages that fill it."""

    def __init__(self, cfg: RunConfig, backend: Backend | None = None, loaded_base=None):
        check_names(cfg)  # fail fast: every name in the config, before any work starts
        if loaded_base is None:
            check_model_name(cfg.model)
        check_installed(cfg.train.report_to)
        if cfg.train.sft_args:  # a typo in an SFTConfig field fails now, not after hours of generation
            from sys2distill.trainer import sft_config

            sft_config(cfg.train, cfg.path / "train")
        t = cfg.task
        try:
            task = tasks.REGISTRY[t.name](train_size=t.train_size, test_size=t.test_size, seed=t.seed, source=t.source,
                                         **t.options)
        except TypeError as e:
            raise UserError(f"bad task.options for {t.name!r}: {e}".replace("__init__() ", "")) from None
        task.check_data()  # bad data, templates, chains and prompt overrides fail before any model is loaded
        self.cfg, self.dir = cfg, cfg.path
        self.ctx = RunContext(cfg, task, backend, loaded_base)
        for m in method_names(cfg):
            self.ctx.method(m)
        self.timings: dict[str, dict] = {}
        self.tracker = Tracker(cfg.train.report_to, self.dir, cfg.name)

    # The run's pieces, as the stages use them (and scripts that drive one stage's work by hand).
    @property
    def task(self):
        return self.ctx.task

    def method(self, name: str):
        return self.ctx.method(name)

    def backend(self) -> Backend:
        return self.ctx.backend()

    def sampling(self):
        return self.ctx.sampling()

    def examples(self, split: str):
        return self.ctx.examples(split)

    def make_filter(self, spec: DistillSpec):
        return make_filter(self.ctx, spec)

    # -- deciding ------------------------------------------------------------------------------
    def view(self, stage: str) -> ConfigView:
        """The config as ``stage`` sees it while it runs: its fingerprint's keys and its neutral ones, nothing else."""
        allowed = frozenset((*self._fingerprint(stage), *stage_reads(stage, self.cfg).neutral))
        return ConfigView(self.cfg, allowed, f"'{stage}' stage")

    def _fingerprint(self, stage: str) -> dict:
        return fingerprint(self.cfg, stage)

    def _outputs(self, stage: str) -> list[str]:
        """The files ``stage`` wrote and no later stage rewrites."""
        later = {f for s in STAGES[STAGES.index(stage) + 1:] for f in rundir.files_under(self.dir, STAGE_READS[s].writes)}
        return [f for f in rundir.files_under(self.dir, STAGE_READS[stage].writes, skip=(f"{stage}/{rundir.RECORD}",))
                if f not in later]

    def _plan(self, stage: str) -> _Plan:
        """What a rerun does with ``stage``, from its record; a rerun that would mix values is a ``UserError``.

        The record is written when a stage starts, so a stage cut off mid-way is resumed, and never
        with other values once it has written something (with nothing written, as after a failed
        start, it starts again with the new ones). A finished stage is skipped while its values and
        files are unchanged; it resumes when only ``extends`` keys changed, and is repaired when a
        file it wrote is damaged or gone. A damaged or deleted record is an error unless another
        stage's record shows the outputs were made with the current values.
        """
        # Evidence that the stage has computed something: files only it writes. Not the frozen data (the
        # task's, rebuilt identically by ``examples``), nor files an earlier stage writes first (model cards).
        earlier = {f for s in STAGES[:STAGES.index(stage)] for f in rundir.files_under(self.dir, STAGE_READS[s].writes)}
        computed = [f for f in self._outputs(stage) if f not in earlier and not f.startswith("data/")]
        saved, new = rundir.read_record(self.dir, stage), self._fingerprint(stage)
        if saved is None:
            # A lost record: another stage's record may hold all of this stage's values (a later stage's
            # does, fingerprints being cumulative; the report's are all in evaluate's). If it holds the
            # current ones, the outputs were made with them and are resumed like a cut-off stage's.
            others = [r for r in (rundir.read_record(self.dir, s) for s in STAGES) if r is not None]
            if not computed or any(all(rundir.recorded(r["config"], k) is not rundir.ABSENT and rundir.same(rundir.recorded(r["config"], k), v, None)
                                       for k, v in new.items()) for r in others):
                return _Plan(run=True)
            marker = rundir.record_path(self.dir, stage)
            raise UserError(f"{marker} is {'damaged' if marker.exists() else 'missing'}, so the values {stage}'s outputs "
                            f"were made with are unknown: restore it, or redo the stage with --force {stage} (Python: "
                            f"run(force=('{stage}',)))")
        default = RunConfig().model_dump()
        changed = [k for k in new if not rundir.same(rundir.recorded(saved["config"], k), new[k], pick(default, k))]
        refused = [k for k in changed if k not in stage_reads(stage, self.cfg).extends]
        done = saved.get("done") is True
        if refused and (done or computed):
            raise UserError(f"run folder {self.dir} has a {'finished' if done else 'started'} '{stage}' stage made with "
                            f"different {', '.join(refused)}: redo it with --force {stage} (Python: run(force=('{stage}',))), "
                            "or start a new run folder with name=<new run name>")
        if refused or not done:
            return _Plan(run=True, repaired={} if refused else saved.get("repaired") or {})
        damaged, current = rundir.damage(self.dir, saved.get("files") or {})  # older records list no files: trusted
        if damaged or changed:
            return _Plan(run=True, damaged=damaged, repaired=saved.get("repaired") or {})
        if current != saved.get("files", {}):  # intact, with new times (a copied folder): hash them once only
            rundir.write_record(self.dir, stage, {**saved, "files": current})
        return _Plan(run=False)

    # -- running -------------------------------------------------------------------------------
    def run(self, stages: tuple[str, ...] = STAGES, force: tuple[str, ...] = ()) -> Results | None:
        """Run ``stages`` in pipeline order, skipping finished ones; ``force`` redoes a stage and all after it.

        Returns the run's ``Results`` once it has a report (also when every stage was already done)."""
        unknown = [s for s in [*stages, *force] if s not in STAGES]
        if unknown:
            raise UserError(f"unknown stage {unknown[0]!r}: choose from {', '.join(STAGES)}")
        if not self.dir.exists() and "generate" not in stages:  # nothing to build on: leave no empty folder behind
            first = min(stages, key=STAGES.index) if stages else "report"
            raise UserError(f"run folder {self.dir} does not exist, so the {first} stage has nothing to work on: run "
                            "`sys2distill run CONFIG` (every stage) first, or pass the config or folder of a run that ran")
        with run_lock(self.dir):
            first_forced = min((STAGES.index(s) for s in force), default=len(STAGES))
            # Every stage is decided before anything is written: a refused rerun leaves the run folder, its
            # config.yaml included, as it was. Forced stages, and those after them, start afresh.
            plans = {s: self._plan(s) if i < first_forced else _Plan(run=True) for i, s in enumerate(STAGES) if s in stages}
            self._clear(STAGES[first_forced:])
            for i, stage in enumerate(s for s, plan in plans.items() if plan.run):
                if i == 0:  # config.yaml: the config of the last run that ran a stage
                    rundir.write_atomic(self.dir / rundir.CONFIG, dump_config(self.cfg))
                self._execute(stage, plans[stage])
        try:
            return Results.load(self.dir) if (self.dir / rundir.RESULTS_JSON).exists() else None
        except ValidationError:  # damaged, and the report (which would repair it) was not among the stages run
            return None

    def _execute(self, stage: str, plan: _Plan) -> None:
        # Damaged files are set aside before the record says "started", so a run killed in between
        # finds them damaged again and sets them aside again.
        repaired = {**plan.repaired, **self._set_aside(plan.damaged)}
        extra = {"repaired": repaired} if repaired else {}
        rundir.write_record(self.dir, stage, {"config": self._fingerprint(stage), "done": False, **extra})
        start = time.perf_counter()
        self.ctx.cfg = self.view(stage)
        try:
            REGISTRY[stage].run(self.ctx)
        finally:
            self.ctx.cfg = self.cfg
        self._count_regenerated(repaired)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
        self.timings[stage] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_gib": round(peak_gib, 2)}
        rundir.write_record(self.dir, stage, {"config": self._fingerprint(stage), "done": True, **self.timings[stage],
                                              "files": rundir.manifest(self.dir, self._outputs(stage)), **extra})
        self.tracker.log_stage(stage, self.timings[stage])

    def _set_aside(self, damaged: dict[str, str]) -> dict[str, dict]:
        """Prepare a finished stage's damaged files for its rerun, print one line per file, return what was done.

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
                (path.parent / rundir.DONE).unlink(missing_ok=True)
                done[name] = {"problem": problem, "remade": True}
            what = "remade" if not kept else f"its {kept} intact samples kept, the missing ones drawn again"
            print(f"repair: {path} was {problem}: {what}", file=sys.stderr, flush=True)
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


__all__ = ["Pipeline", "STAGES", "STAGE_READS", "Reads", "stage_reads"]

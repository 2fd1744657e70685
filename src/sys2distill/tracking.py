"""Experiment tracking: the run's stage timings and generated tokens, in the trackers of ``train.report_to``.

transformers' Trainer sends the training curves (loss, learning rate, grad norm) to the same
trackers through its own integrations (``SFTConfig.report_to``). This module logs what the
Trainer cannot see — each stage's wall time, peak memory and generated tokens — with each
tracker's own API: tensorboard through ``torch.utils.tensorboard`` into ``<run_dir>/tensorboard/``;
wandb, mlflow and trackio into their active run (the one the Trainer also uses), or a new one
named after the run. Only rank 0 logs (``torchrun`` starts one pipeline per process).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sys2distill.errors import UserError
from sys2distill import rundir
from sys2distill.records import FilterDecision, Trace, read_records

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}  # name -> pip package
TENSORBOARD_DIR = "tensorboard"  # under the run folder; the Trainer's own curves go to train/<entry>/runs/


def tracker_names(report_to: str | list[str]) -> list[str]:
    return [n for n in ([report_to] if isinstance(report_to, str) else report_to) if n != "none"]


def check_installed(report_to: str | list[str]) -> None:
    """Fail before any work when a tracker's package is missing (the Trainer would fail only at the train stage)."""
    for name in tracker_names(report_to):
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise UserError(f"train.report_to names {name}, which is not installed: pip install {TRACKERS[name]}")


def stage_tokens(run_dir: Path, stage: str) -> int | None:
    """Tokens generated in ``stage`` (System 2 sampling, the filter's own calls such as USC, evaluation);
    None for stages that generate nothing."""
    if stage in ("generate", "evaluate"):
        scored = (Path(rundir.ROWS).name, Path(rundir.FILTER_CHECK).name)  # evaluate's scored rows repeat its traces' tokens
        return sum(t.tokens for f in sorted((run_dir / stage).glob("*.jsonl")) if f.name not in scored
                   for t in read_records(f, Trace))
    if stage == "filter":
        return sum(d.details.get("tokens", 0) for f in sorted((run_dir / "filter").glob("*.jsonl"))
                   for d in read_records(f, FilterDecision))
    return None


class Tracker:
    """Scalars to every configured tracker; does nothing for ``report_to: none`` and on ranks other than 0."""

    def __init__(self, report_to: str | list[str], run_dir: Path, run_name: str):
        self.names = tracker_names(report_to) if rundir.is_main_process() else []
        self.run_dir, self.run_name = Path(run_dir), run_name
        self._trackio_started = False

    def log_stage(self, stage: str, timing: dict) -> None:
        """A finished stage: ``stage_seconds/<stage>``, ``peak_rss_gib/<stage>``, ``generated_tokens/<stage>``."""
        if not self.names:
            return
        scalars = {f"stage_seconds/{stage}": timing["seconds"], f"peak_rss_gib/{stage}": timing["peak_rss_gib"]}
        tokens = stage_tokens(self.run_dir, stage)
        if tokens is not None:
            scalars[f"generated_tokens/{stage}"] = tokens
        self.log(scalars)

    def log(self, scalars: dict[str, float]) -> None:
        for name in self.names:
            getattr(self, f"_{name}")(scalars)

    def _tensorboard(self, scalars: dict[str, float]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A writer per call: each stage may run in its own process (`sys2distill generate`, then `filter`, ...).
        with SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR)) as writer:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step=0)

    def _wandb(self, scalars: dict[str, float]) -> None:
        import wandb

        if wandb.run is None:  # the Trainer's WandbCallback reuses an active run; same project default as it
            wandb.init(project=os.getenv("WANDB_PROJECT", "huggingface"), name=self.run_name)
        wandb.log(scalars)  # no step: the Trainer advances the run's step

    def _mlflow(self, scalars: dict[str, float]) -> None:
        import mlflow

        if mlflow.active_run() is None:  # the Trainer's MLflowCallback reuses an active run
            mlflow.start_run(run_name=self.run_name)
        mlflow.log_metrics(scalars)

    def _trackio(self, scalars: dict[str, float]) -> None:
        import trackio

        if not self._trackio_started:
            trackio.init(project=os.getenv("TRACKIO_PROJECT", "huggingface"), name=self.run_name)
            self._trackio_started = True
        trackio.log(scalars)

"""The run folder: its file names, how files are written, and each stage's record of what it wrote.

Every writer of a run folder writes through here: whole files atomically (a temporary file of this
process, fsynced, renamed over the target: readers never see half a file, and ranks of a
multi-process job may write the same file at once), appended records fsynced per batch
(``records.append_jsonl``). A finished stage's record, ``<stage>/STAGE.json``, holds the config values
its outputs depend on and every file it wrote with size, modification time and sha256; a rerun tells
intact outputs from damaged ones as rsync does (a different size is damage, the same size and time
is intact, and only a file whose time changed, as in a copied folder, is hashed again).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sys2distill.configview import pick

# -- file names: the one place each is spelled -------------------------------------------------------
CONFIG = "config.yaml"  # the config of the last run that ran a stage in the folder
BACKEND = "backend.json"  # the engine and dtype each role (run, checkpoint) resolved to
TASK = "data/TASK.json"  # the task config and the sha256 of each frozen split
LOCK = ".lock"  # runlock's file
RECORD = "STAGE.json"  # <stage>/STAGE.json: a stage's record
ROWS = "evaluate/rows.jsonl"  # every scored (system, test item)
FILTER_CHECK = "evaluate/filter_check.jsonl"  # kept train answers against the train labels
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
PLOT = "accuracy_vs_tokens.png"
DONE = "DONE.json"  # train/<entry>/DONE.json: a checkpoint is complete
SKIPPED = "SKIPPED.json"  # train/<entry>/SKIPPED.json: the filter kept nothing (distill.on_empty: skip)
TRAIN_LOG = "train_log.jsonl"
CONTROLS = "controls"  # distill/controls/, train/controls/: the control models' data and checkpoints
CARD = "README.md"  # a checkpoint's model card


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` / ``accelerate launch`` job (or a single process): the one that writes."""
    return int(os.environ.get("RANK", "0")) == 0


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` whole: a temporary file of this process, fsynced, renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    """A JSON object file's contents; None when it is missing or is not one (damaged)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- what a stage wrote --------------------------------------------------------------------------

def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def files_under(root: Path, paths: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    """Run-folder-relative names of the files at or under ``paths`` (glob patterns allowed), sorted;
    temporary ``*.tmp`` files and ``skip`` left out."""
    out = set()
    for top in (t for rel in paths for t in root.glob(rel)):
        for f in [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file()):
            name = f.relative_to(root).as_posix()
            if name not in skip and not name.endswith(".tmp"):
                out.add(name)
    return sorted(out)


def manifest(root: Path, names: list[str]) -> dict[str, list]:
    """``{name: [size, mtime_ns, sha256]}`` for files of ``root``."""
    out = {}
    for name in names:
        st = (root / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns, sha256(root / name)]
    return out


def damage(root: Path, files: dict[str, list]) -> tuple[dict[str, str], dict[str, list]]:
    """(``{name: "missing" | "changed"}`` for recorded files that are no longer as recorded, the manifest with
    the times of intact files updated, so a copied folder is hashed once)."""
    damaged, current = {}, {}
    for name, (size, mtime, digest) in files.items():
        path = root / name
        if not path.is_file():
            damaged[name] = "missing"
            continue
        st = path.stat()
        if st.st_size != size or (st.st_mtime_ns != mtime and sha256(path) != digest):
            damaged[name] = "changed"
        current[name] = [size, st.st_mtime_ns, digest]
    return damaged, current


class Repair(BaseModel):
    """What a repair did to one damaged file (``repaired`` in a stage record)."""

    model_config = ConfigDict(extra="forbid")
    problem: Literal["missing", "changed"]
    samples_kept: int | None = None  # a trace file: intact samples kept ...
    samples_regenerated: int | None = None  # ... and samples drawn again once the stage ran
    remade: bool | None = None  # any other file: deleted and made again


class StageRecord(BaseModel):
    """The shape of ``<stage>/STAGE.json``; a record not of this shape is damaged."""

    model_config = ConfigDict(extra="allow")  # timings and the like
    config: dict[str, Any]
    done: bool = False
    files: dict[str, tuple[int, int, str]] = {}  # name → size, mtime_ns, sha256 (manifest)
    repaired: dict[str, Repair] = {}


def record_path(root: Path, stage: str) -> Path:
    return Path(root) / stage / RECORD


def read_record(root: Path, stage: str) -> dict | None:
    """A stage's record; None when it is missing or damaged."""
    saved = read_json(record_path(root, stage))
    try:
        StageRecord.model_validate(saved)
    except ValidationError:
        return None
    return saved


def write_record(root: Path, stage: str, record: dict) -> None:
    write_atomic(record_path(root, stage), json.dumps(record, indent=1))


# -- a record's config values against the current ones ---------------------------------------------

ABSENT = object()  # a key a record does not hold


def recorded(config: dict, dotted: str):
    """The value a stage record holds for ``a.b.c``: a key of its own, or inside a whole section that an
    older version recorded (``generation`` rather than ``generation.temperature``)."""
    if dotted in config:
        return config[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        section = config.get(".".join(parts[:i]), ABSENT)
        if isinstance(section, dict):
            try:
                return pick(section, ".".join(parts[i:]))
            except (KeyError, TypeError):
                return ABSENT
    return ABSENT


def same(saved, new, default) -> bool:
    """Whether a saved fingerprint value matches the current one. A key the config gained after the
    run folder was made (absent from ``saved``) matches while it holds its default, so adding a
    config field does not invalidate every existing run."""
    if saved is ABSENT:
        return new == default
    if isinstance(saved, dict) and isinstance(new, dict):
        default = default if isinstance(default, dict) else {}
        return set(saved) <= set(new) and all(same(saved.get(k, ABSENT), v, default.get(k, ABSENT))
                                              for k, v in new.items())
    return saved == new

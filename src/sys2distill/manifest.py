"""What a finished stage wrote, so a rerun can tell whether its outputs are still whole (issue 21).

A stage is done only while its outputs are exactly what it wrote when it finished: its record
(``<stage>/STAGE.json``) lists every file with size, modification time and sha256. The check is
rsync's: a different size is damage, the same size and time is intact, and only a file whose time
changed (a copied run folder) is hashed again. Truncation, appended or duplicated lines, garbage
and deleted files are all caught.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


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


def record(root: Path, names: list[str]) -> dict[str, list]:
    """``{name: [size, mtime_ns, sha256]}`` for files of ``root``."""
    out = {}
    for name in names:
        st = (root / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns, sha256(root / name)]
    return out


def damage(root: Path, files: dict[str, list]) -> tuple[dict[str, str], dict[str, list]]:
    """(``{name: "missing" | "changed"}`` for recorded files that are no longer as recorded, the record with
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

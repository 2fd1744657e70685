"""One writer per run folder: an advisory lock held while a pipeline runs (issue 21).

Two processes on one run folder would both compute every stage and append the same samples
twice. ``fcntl.flock`` is the lock: the kernel drops it when its holder exits or is killed, so
the lock of a dead process is taken over by the next run without guessing whether a recorded
pid is still alive (the weak point of pid-file locks, and of filelock's SoftFileLock). The
holder writes its pid and host into the lock file, so a second process can say who holds it;
filelock's ``FileLock`` is the same flock but exposes a holder's pid only in its soft fallback.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sys2distill import rundir
from sys2distill.errors import UserError

LOCK_FILE = rundir.LOCK


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the body; a ``UserError`` naming the holder when another process has it.

    Under ``torchrun`` / ``accelerate launch`` every rank runs the pipeline: rank 0 holds the lock
    for the whole job (and a job that cannot get it stops there).
    """
    if not rundir.is_main_process():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            who = f"pid {holder[0]} on {holder[1]}" if len(holder) == 2 else "a process that is still starting"
            raise UserError(f"run folder {folder} is in use by another sys2distill run ({who}): wait for it to end or "
                            "stop it, or set name=<new run name>") from None
        except OSError as e:
            raise UserError(f"cannot lock run folder {folder} ({e.strerror}): put run_dir on a file system with "
                            "file locks (a local disk)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

"""Failures no retry can fix, told apart from those a retry may fix (a lost node, a killed worker).

A trial that hits one of these stops the whole Tune run instead of being retried
(raymsa/search/tune.py); the study's last line then names the cause and the path.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

# below this much free space on the study's storage a phase is not started (checkpoints of every
# trial, Tune's experiment state and eval.csv files need room); RAYMSA_MIN_FREE_MB overrides it
DEFAULT_MIN_FREE_MB = 200
FATAL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
                errno.EDQUOT: "disk quota exceeded"}
# fatal exceptions by name, for when they arrive wrapped (a Ray Train worker's error reaches the
# trial as a TrainingFailedError whose text holds the worker's traceback)
FATAL_NAMES = ("NonFiniteLossError", "ConfigError", "DataError")


class FatalError(RuntimeError):
    """A failure that cannot succeed on retry: stops the study with one line naming cause and path."""


def min_free_bytes() -> int:
    return int(float(os.environ.get("RAYMSA_MIN_FREE_MB", DEFAULT_MIN_FREE_MB)) * 2**20)


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system that holds `path` (or would, for a folder not made yet)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_free_space(path: str | Path, phase: str) -> None:
    free, need = free_bytes(path), min_free_bytes()
    if free < need:
        raise FatalError(f"{path}: only {free / 2**20:.0f} MiB free on its file system, {need / 2**20:.0f} MiB "
                         f"needed before the {phase} (RAYMSA_MIN_FREE_MB sets the threshold); "
                         f"free some space or pass --storage on another disk")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def fatal_cause(exc: BaseException, storage: str | Path | None = None) -> str | None:
    """One line naming why `exc` cannot succeed on retry, or None when a retry may help."""
    from raymsa.config import ConfigError
    from raymsa.data import DataError
    from raymsa.train.loop import NonFiniteLossError

    for e in _chain(exc):
        if isinstance(e, FatalError):
            return str(e)
        if isinstance(e, NonFiniteLossError):
            return f"NonFiniteLossError: {e} (lower train.lr or set train.grad_clip)"
        if isinstance(e, (ConfigError, DataError)):
            return f"{type(e).__name__}: {e}"
        if isinstance(e, OSError) and e.errno in FATAL_ERRNOS:
            where = e.filename or storage or "?"
            return f"{FATAL_ERRNOS[e.errno]}: {where}"
    text = str(exc)
    for name in FATAL_NAMES:
        if f"{name}:" in text:
            line = next(ln for ln in reversed(text.splitlines()) if f"{name}:" in ln)
            return line.strip()
    # torch.save and others report a full disk as a RuntimeError with no errno: look at the disks
    # a trial writes to (the study's storage; the temporary folder its checkpoints are staged in)
    for where in ([storage] if storage is not None else []) + [tempfile.gettempdir()]:
        if free_bytes(where) < min_free_bytes():
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            return (f"no space left on device: {where} ({free_bytes(where) / 2**20:.0f} MiB free; "
                    f"{type(exc).__name__}: {last})")
    return None

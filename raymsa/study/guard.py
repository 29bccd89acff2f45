"""What keeps a study folder sane around its driver: one driver at a time (a lock held for the
driver's whole life), signals that stop the study instead of becoming results, and the one line
that names why a study stopped."""

from __future__ import annotations

import datetime as dt
import errno
import os
import signal
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from raymsa.faults import FATAL_ERRNOS, FatalError, check_free_space, fatal_cause, free_bytes, min_free_bytes

__all__ = ["FatalStudyError", "Interrupted", "StudyBusy", "StudyLock", "check_free_space", "describe_failure",
           "holds_results", "install_signal_handlers", "was_interrupted"]

FatalStudyError = FatalError
LOCK_NAME = ".driver.lock"
# what a study folder holds before any phase has produced something: such a folder counts as
# empty (a study refused or failed before its first phase can be rerun without --resume)
MANIFEST = {"study.yaml", "study.json", "timing.csv", LOCK_NAME}  # timing.csv: set-up costs only, no result


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the study stops; what finished is kept, nothing interrupted is a result."""


# the signal that stopped the study: what the handler raises may reach the study as a plain
# KeyboardInterrupt (Ray's blocking calls run the handler from C++ and raise their own), so the
# study asks this, not the exception's type
received: str | None = None


def _on_signal(signum, frame):
    global received
    received = signal.Signals(signum).name
    # one signal is enough: the clean-up that follows (Ray's shutdown) must not be cut short
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(received)


def was_interrupted(exc: BaseException | None = None) -> bool:
    return received is not None or isinstance(exc, KeyboardInterrupt)


def install_signal_handlers() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _on_signal)


def holds_results(out: Path) -> bool:
    return out.is_dir() and any(p.name not in MANIFEST for p in out.iterdir())


class StudyBusy(RuntimeError):
    pass


class StudyLock:
    """An exclusive lock on a study folder (flock on <out>/.driver.lock, released by the kernel
    if the driver dies), with the holder's pid and host written in the file."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / LOCK_NAME
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = self._holder()
            raise StudyBusy(f"{self.out} is being run by {holder}; wait for that driver to end "
                            f"(or stop it), then rerun with --resume") from None
        self._lock = lock
        started = dt.datetime.now().isoformat(timespec="seconds")
        # the lock is on the inode: rewriting the file's text does not release it
        with open(self.path, "w") as f:
            f.write(f"pid {os.getpid()} host {socket.gethostname()} started {started}\n")

    def _holder(self) -> str:
        try:
            words = self.path.read_text().split()
            info = dict(zip(words[::2], words[1::2]))
            return f"pid {info['pid']} on host {info['host']}"
        except (OSError, KeyError):
            return "another driver (pid and host not written yet)"

    def release(self) -> None:
        if self._lock is not None:
            try:
                with open(self.path, "w"):
                    pass  # no stale holder to read once released
            except OSError:
                pass
            self._lock.release()
            self._lock = None


def describe_failure(exc: BaseException, out: Path) -> str:
    """The root cause of a failed study, with the path it concerns (the study's storage, not
    Ray's session folder)."""
    cause = fatal_cause(exc, out)
    if cause:
        return cause
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in FATAL_ERRNOS:
            return f"{FATAL_ERRNOS[e.errno]}: {e.filename or out}"
    if free_bytes(out) < min_free_bytes() or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return f"no space left on device: {out} ({free_bytes(out) / 2**20:.0f} MiB free)"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''} (study folder {out})"

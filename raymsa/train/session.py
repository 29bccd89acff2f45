"""Where a run reports metrics and checkpoints: the only Ray-specific lines of the training loop.

- LocalSession: no Ray at all (python -m raymsa.train with one worker, tests).
- TrainSession: inside a Ray Train worker (TorchTrainer, DDP across workers).
- TuneSession:  inside a plain Ray Tune function trainable (one-worker search trials: no Train
  start-up cost).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Session:
    rank: int = 0
    world_size: int = 1
    log_dir: Path | None = None  # where the loop writes its own TensorBoard events (rank 0)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        """The directory of the checkpoint to resume from, or None."""
        yield None


class LocalSession(Session):
    """Metrics to <run_dir>/metrics.jsonl, the latest checkpoint to <run_dir>/checkpoint/."""

    def __init__(self, run_dir: str | Path, resume: bool = True, log: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume = resume
        self.log_dir = self.run_dir / "tensorboard" if log else None
        if not resume:
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint"

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if checkpoint_dir is not None:
            # replace the previous checkpoint without a moment where none exists on disk
            tmp = self.run_dir / "checkpoint.tmp"
            old = self.run_dir / "checkpoint.old"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(checkpoint_dir, tmp)
            if self.checkpoint_path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.checkpoint_path, old)
            os.replace(tmp, self.checkpoint_path)
            shutil.rmtree(old, ignore_errors=True)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        if self.resume and (self.checkpoint_path / "state.pt").exists():
            yield self.checkpoint_path
        else:
            yield None


class TrainSession(Session):
    """Inside a Ray Train worker."""

    def __init__(self, log_dir: str | Path | None = None):
        import ray.train

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.log_dir = Path(log_dir) if log_dir else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
        else:
            with ckpt.as_directory() as d:
                yield Path(d)


class TuneSession(Session):
    """Inside a plain Tune function trainable (Tune's own logger writes TensorBoard events)."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        from ray import tune

        ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report(metrics, checkpoint=ckpt)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        from ray import tune

        ckpt = tune.get_checkpoint()
        if ckpt is None:
            yield None
        else:
            with ckpt.as_directory() as d:
                yield Path(d)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="raymsa-ckpt-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)

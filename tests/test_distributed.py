"""The same loop under Ray Train: 2 DDP workers (gloo) with one worker killed mid-run and restarted
from its checkpoint, compared with the bare 1-worker loop on the same config."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from raymsa.train.config import parse_train_config
from raymsa.train.loop import run
from raymsa.train.session import LocalSession, TrainSession

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.heavy]

CONFIG = {
    "model": {"name": "fsrf", "variant": "tiny"},
    "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
    "train": {"epochs": 4, "batch_size": 32, "eval_batch_size": 64, "lr": 2e-3, "seed": 7},
}


def _crashing_worker(loop_config):
    """Rank 1 dies like a killed process right after epoch 2's checkpoint, on the first attempt."""
    import contextlib
    import time

    import ray
    import torch

    from raymsa.train.loop import run as loop_run

    marker = Path(loop_config["marker"])

    class Session(TrainSession):
        @contextlib.contextmanager
        def restored_checkpoint(self):
            with super().restored_checkpoint() as d:
                if d is not None and self.rank == 0:
                    state = torch.load(Path(d) / "state.pt", weights_only=True)
                    marker.with_suffix(".resumed").write_text(str(state["epoch"]))
                yield d

        def report(self, metrics, checkpoint_dir=None):
            super().report(metrics, checkpoint_dir)
            if self.rank == 1 and metrics["epoch"] == 2 and not marker.exists():
                # Train commits a checkpoint once its controller has collected every rank's report,
                # polling every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s); tiny epochs take under a
                # second, so die only after a poll has surely happened, or nothing is committed yet
                time.sleep(5)
                marker.write_text("killed")
                os._exit(1)

    cfg = parse_train_config(loop_config["config"], "test")
    result = loop_run(cfg, ray.get(loop_config["data"]), Session(), verbose=True)
    if ray.train.get_context().get_world_rank() == 0:
        Path(loop_config["out"]).write_text(repr((result.epochs_run, result.best_objective, result.best_epoch)))


def test_ddp_run_survives_a_killed_worker_and_matches_one_worker(tiny_data, tmp_path, ray_cluster):
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg = parse_train_config(CONFIG, "test")
    single = run(cfg, tiny_data, LocalSession(tmp_path / "single"), verbose=False)

    marker, out = tmp_path / "killed", tmp_path / "ddp.txt"
    trainer = TorchTrainer(
        _crashing_worker,
        train_loop_config={"config": cfg.to_dict(), "data": ray.put(tiny_data), "marker": str(marker),
                           "out": str(out)},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="ddp", storage_path=str(tmp_path / "ray"),
                             failure_config=FailureConfig(max_failures=1)),
    )
    result = trainer.fit()
    assert marker.exists(), "the worker was never killed"
    epochs_run, best_objective, best_epoch = eval(out.read_text())
    # restarted from a checkpoint, not from scratch. Rank 1 dies right after reporting epoch 2;
    # Train commits a checkpoint only once every rank has reported it, so the latest committed one
    # is epoch 2 or, when the controller had not yet collected rank 0's report, epoch 1.
    assert marker.with_suffix(".resumed").read_text() in ("1", "2")
    assert epochs_run == 4
    assert result.metrics["epoch"] == 4
    assert result.checkpoint is not None
    # two workers see the same global batch split in halves: the same optimisation up to the
    # order of floating-point sums and dropout draws, so validation lands close to one worker's
    assert np.isfinite(best_objective)
    assert abs(best_objective - single.best_objective) < 0.1 * single.best_objective

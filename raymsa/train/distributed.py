"""Ray Train around the one loop: TorchTrainer with N workers, DDP over gloo (CPU) or nccl (GPU).

The dataset travels as one object in Ray's object store; every worker on a node maps the same copy.
A run relaunched with the same name and storage path continues from its latest checkpoint (Train
V2 restores its checkpoint manager from storage), and a worker that dies mid-run is restarted from
the latest checkpoint up to `max_failures` times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from raymsa.data import MMSAData
from raymsa.train.config import TrainConfig
from raymsa.train.loop import FinalEval, RunResult, run


def _worker(loop_config: dict[str, Any]) -> None:
    # --- Ray-specific: runs on every Train worker ---
    from raymsa.train.config import parse_train_config
    from raymsa.train.session import TrainSession

    cfg = parse_train_config(loop_config["config"], "train_loop_config")
    data = loop_config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    elif callable(getattr(data, "get", None)):
        data = data.get()  # a study's DataHandle: every worker memory-maps the node's one copy
    session = TrainSession(log_dir=loop_config.get("log_dir"))
    result = run(cfg, data, session, final_eval=loop_config.get("final_eval"),
                 verbose=loop_config.get("verbose", True))
    if session.is_main and loop_config.get("result_path"):
        _save_result(result, Path(loop_config["result_path"]))


def _save_result(result: RunResult, path: Path) -> None:
    import dataclasses
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(result)))
    os.replace(tmp, path)


def load_result(path: Path) -> RunResult:
    import json

    return RunResult(**json.loads(Path(path).read_text()))


def fit_distributed(cfg: TrainConfig, data: MMSAData | ray.ObjectRef, *, storage_path: str | Path, name: str,
                    final_eval: FinalEval | None = None, max_failures: int = 2, callbacks: list | None = None,
                    verbose: bool = True) -> RunResult:
    """Run the loop under TorchTrainer; returns the selected model's results (from rank 0)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not isinstance(data, ray.ObjectRef) and not callable(getattr(data, "get", None)):
        data = ray.put(data)  # one copy in the object store, mapped by every worker of a node
    storage_path = Path(storage_path).resolve()
    run_dir = storage_path / name
    result_path = run_dir / "result.json"
    res = cfg.resources
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "config": cfg.to_dict(), "data": data, "final_eval": final_eval, "verbose": verbose,
            "log_dir": str(run_dir / "tensorboard"), "result_path": str(result_path),
        },
        torch_config=TorchConfig(backend="nccl" if res.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=res.use_gpu,
                                     resources_per_worker={"CPU": res.cpus_per_worker}),
        run_config=RunConfig(
            name=name, storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
        ),
    )
    trainer.fit()
    return load_result(result_path)

"""python -m raymsa.train [CONFIG.yaml] [key=value ...] [--output DIR] [--resume]

One training run: prints a line per epoch, then the selected model's validation and test metrics.
With resources.workers > 1 (or resources.use_gpu) it runs under Ray Train (DDP).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raymsa.config import ConfigError
from raymsa.data import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raymsa.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML config: a path, or a name in the packaged configs/; optional")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.name=fsrf train.epochs=5")
    p.add_argument("--output", default="results/train", help="run folder (checkpoint, metrics, TensorBoard)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--address", default=None, help="Ray cluster address for multi-worker runs")
    args = p.parse_args(argv)
    # a first positional with '=' is an override, not a file
    if args.config and "=" in args.config:
        args.overrides.insert(0, args.config)
        args.config = None

    from raymsa.resources import resolve_named
    from raymsa.train.config import load_train_config

    try:
        if args.config is not None:
            args.config = resolve_named(args.config, "configs", "training config")
        cfg = load_train_config(args.config, args.overrides)
        data = cfg.data.load()
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    out = Path(args.output)
    print(f"[raymsa] model {cfg.model.name} | scenario {cfg.scenario.label} | data {data.source} "
          f"({data.dataset}) | seed {cfg.train.seed} | output {out}", flush=True)
    print(f"[raymsa] TensorBoard: tensorboard --logdir {out.resolve()}", flush=True)

    if cfg.resources.workers > 1 or cfg.resources.use_gpu:
        from raymsa.cluster import ClusterError, start_ray
        from raymsa.train.distributed import fit_distributed

        try:
            # a local Ray as a study starts it: loopback only, the store sized for the data put there
            start_ray(args.address, store_bytes=data.nbytes, configure_logging=False)
        except ClusterError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not args.resume:
            import shutil

            shutil.rmtree(out / "ray", ignore_errors=True)
        result = fit_distributed(cfg, data, storage_path=out, name="ray")
    else:
        from raymsa.train.loop import run
        from raymsa.train.session import LocalSession

        result = run(cfg, data, LocalSession(out, resume=args.resume))

    from raymsa.train.evaluate import grid_mean

    summary = {"best_epoch": result.best_epoch, "valid": {m: grid_mean(result.valid, m) for m in next(iter(result.valid.values()), {})}}
    if result.test:
        summary["test"] = {m: grid_mean(result.test, m) for m in next(iter(result.test.values()))}
    (out / "summary.json").write_text(json.dumps({"summary": summary, "valid": result.valid, "test": result.test,
                                                  "diagnostics": result.diagnostics, "config": cfg.to_dict()},
                                                 indent=1))
    print(f"[raymsa] selected epoch {result.best_epoch} (best validation {cfg.train.select_metric}); "
          f"mean over the {cfg.scenario.label} grid:")
    for split in ("valid", "test"):
        if split in summary:
            print(f"  {split:5s} " + "  ".join(f"{k} {v:.4f}" for k, v in summary[split].items()))
    if result.diagnostics:
        # the model's inner workings on test, mean over the grid (per level in summary.json)
        keys = next(iter(result.diagnostics.values()))
        print("[raymsa] diagnostics on test, mean over the grid: " + "  ".join(
            f"{k[5:]} {grid_mean(result.diagnostics, k):.3f}" for k in keys))
    print(f"[raymsa] results in {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m raymsa.study NAME [--smoke] [--storage DIR] [--address ADDR] [--resume] [--set key=value ...]

NAME is a file in studies/ (fsrf_sweep, senti_ifusion_sweep, compare) or a path to a study YAML.
For each scenario: search each model's loss weights and temperatures (Optuna in Ray Tune, on
validation), retrain the best config with every seed, test it on the scenario's grid and under
every other scenario; then write the report to <storage>/<name>/report/.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from raymsa.config import ConfigError
from raymsa.data import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m raymsa.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="study name in studies/ or a path to a study YAML")
    p.add_argument("--smoke", action="store_true", help="apply the study's smoke overlay (minutes on a laptop)")
    p.add_argument("--storage", default="results", help="folder for results, Tune experiments and the report")
    p.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto, or ray://host:10001)")
    p.add_argument("--resume", action="store_true", help="continue a killed study; finished phases are kept")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study field, e.g. --set search.trials=4 (repeatable)")
    args = p.parse_args(argv)

    from raymsa.study.config import load_study

    try:
        study, spaces, path = load_study(args.name, smoke=args.smoke, overrides=args.overrides)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    out = (Path(args.storage) / study.name).resolve()
    if out.exists() and any(out.iterdir()) and not args.resume:
        print(f"error: {out} already holds results of this study; pass --resume to continue it, "
              f"or --storage DIR for a fresh one (nothing was deleted)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out / "study.yaml")

    import ray

    from raymsa.report.__main__ import main as report_main
    from raymsa.search.tune import DRIVER_RESOURCE
    from raymsa.study.cluster import start_ray
    from raymsa.study.runner import StudyRunner

    # Tune's own progress tables and snapshot warnings are long; our phase and trial lines say enough
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    if args.address:
        if args.address.startswith("ray://"):
            print(f"[raymsa] warning: with ray:// this process is the study's driver: it writes {out} here "
                  f"while trials write theirs on the cluster's nodes, so that folder must be the same shared "
                  f"storage on both sides; otherwise run the study on the head (docs/cluster.md)", file=sys.stderr)
    # loopback-only unless joining a cluster; a running `ray start` here is joined as it is
    ctx = start_ray(args.address, resources={DRIVER_RESOURCE: 1000})
    dashboard = getattr(ctx, "dashboard_url", None)
    print(f"[raymsa] study {study.name} ({path})")
    print(f"[raymsa] results:     {out}")
    print(f"[raymsa] TensorBoard: tensorboard --logdir {out / 'tune'}")
    print(f"[raymsa] Ray dashboard: {'http://' + dashboard if dashboard else 'not running'}", flush=True)

    runner = StudyRunner(study, spaces, out, resume=args.resume)
    failed: BaseException | None = None
    try:
        runner.run()
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BaseException as e:  # noqa: BLE001 - report what finished, then fail loudly
        failed = e
    finally:
        ray.shutdown()

    # the report is rebuilt from stored files alone, also after a failure (what finished shows)
    report_rc = report_main([str(out)])
    minutes = (time.perf_counter() - t0) / 60
    if failed is not None:
        print(f"[raymsa] study stopped after {minutes:.1f} min: {type(failed).__name__}: {failed}\n"
              f"[raymsa] finished phases are kept; rerun with --resume to continue", file=sys.stderr)
        return 1
    print(f"[raymsa] study {study.name} finished in {minutes:.1f} min")
    return 0 if report_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

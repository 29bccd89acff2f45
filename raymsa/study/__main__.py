"""python -m raymsa.study NAME [--smoke] [--storage DIR] [--address ADDR] [--resume] [--set key=value ...]

NAME is a file in studies/ (fsrf_sweep, senti_ifusion_sweep, compare, references, ablation_fsrf,
ablation_senti_ifusion) or a path to a study YAML.
For each scenario: search each model's loss weights and temperatures (Optuna in Ray Tune, on
validation), retrain the best config with every seed, test it on the scenario's grid and under
every other scenario; then write the report to <storage>/<name>/report/.

Exit codes: 0 finished; 1 a phase failed (what finished is kept); 2 refused before anything ran
(bad study, flag or data; the folder is in use or needs --resume); 130 interrupted (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from raymsa.config import ConfigError
from raymsa.data import DataError
from raymsa.study import guard
from raymsa.study.guard import (FatalStudyError, StudyBusy, StudyLock, check_free_space, describe_failure,
                                holds_results, install_signal_handlers, was_interrupted)

EXIT_INTERRUPTED = 130


def start_ray(address: str | None):
    """The study's one ray.init (raymsa.cluster: a loopback-only local Ray, or the cluster at
    `address`); returns its context."""
    from raymsa.search.tune import DRIVER_RESOURCE
    from raymsa import cluster

    try:
        return cluster.start_ray(address, resources={DRIVER_RESOURCE: 1000})
    finally:
        # ray.init replaces the driver's SIGTERM handler with a bare sys.exit: take it back
        install_signal_handlers()


def quiet_third_party() -> None:
    """Keep the console to the study's own lines and real warnings."""
    # Tune's own progress tables and snapshot warnings are long; our phase and trial lines say enough
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune would take SIGINT for itself, end the run "gracefully" and hand back the interrupted
    # trials as results (then best.json was written from them); the study handles it instead
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    import optuna

    # "A new study created in memory with name: no-name-..." for every search
    optuna.logging.set_verbosity(optuna.logging.WARNING)


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

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install_signal_handlers()
    guard.received = None
    try:
        return _main(args)
    except KeyboardInterrupt:  # our handler's Interrupted, or what Ray made of it
        print("[raymsa] interrupted; rerun with --resume", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _main(args) -> int:
    from raymsa.study.config import load_study
    from raymsa.study.runner import StudyRunner

    # everything the study needs is checked before Ray starts and before anything is written
    try:
        study, spaces, path = load_study(args.name, smoke=args.smoke, overrides=args.overrides)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = (Path(args.storage) / study.name).resolve()
    try:
        check_free_space(out, "study")
        # converting the data (once per file) is also its check: nothing is created for a bad file
        t_data = time.perf_counter()
        data = StudyRunner.check_data(study, StudyRunner.arrays_root_for(out))
        data_s = time.perf_counter() - t_data
    except (ConfigError, DataError, FatalStudyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    lock = StudyLock(out)
    try:
        lock.acquire()
    except StudyBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a read-only storage
        print(f"error: {e.filename or out}: cannot create the study folder: {e.strerror}", file=sys.stderr)
        return 2
    try:
        if holds_results(out) and not args.resume:
            print(f"error: {out} already holds results of this study; pass --resume to continue it, "
                  f"or --storage DIR for a fresh one (nothing was deleted)", file=sys.stderr)
            return 2
        return _run(args, study, spaces, path, data, out, data_s)
    finally:
        lock.release()


def _run(args, study, spaces, path: Path, data, out: Path, data_s: float = 0.0) -> int:
    import ray

    from raymsa.cluster import ClusterError
    from raymsa.report.__main__ import main as report_main
    from raymsa.study.runner import StudyRunner, append_timing

    def timed(part: str, seconds: float) -> None:  # the study's own steps in timing.csv (phase 'study')
        append_timing(out, [{"phase": "study", "trial": "", "part": part, "seconds": seconds}])

    shutil.copyfile(path, out / "study.yaml")
    quiet_third_party()
    t0 = time.perf_counter()
    if args.address and args.address.startswith("ray://"):
        print(f"[raymsa] warning: with ray:// this process is the study's driver: it writes {out} here "
              f"while trials write theirs on the cluster's nodes, so that folder must be the same shared "
              f"storage on both sides; otherwise run the study on the head (docs/cluster.md)", file=sys.stderr)
    failed: BaseException | None = None
    try:
        timed("data", data_s)
        t_ray = time.perf_counter()
        ctx = start_ray(args.address)
        timed("ray_start", time.perf_counter() - t_ray)
        dashboard = getattr(ctx, "dashboard_url", None)
        print(f"[raymsa] study {study.name} ({path})")
        print(f"[raymsa] results:     {out}")
        print(f"[raymsa] TensorBoard: tensorboard --logdir {out / 'tune'}")
        print(f"[raymsa] Ray dashboard: {'http://' + dashboard if dashboard else 'not running'}", flush=True)
        runner = StudyRunner(study, spaces, out, resume=args.resume)
        runner.load_data(data)
        del data
        runner.run()
    except (ConfigError, DataError, ClusterError) as e:
        _shutdown(ray)
        if was_interrupted():
            raise KeyboardInterrupt from e
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BaseException as e:  # noqa: BLE001 - report what finished, then fail loudly
        failed = e
    t_down = time.perf_counter()
    _shutdown(ray)
    timed("ray_shutdown", time.perf_counter() - t_down)
    if was_interrupted(failed):
        # an interrupt is never a result: no report from a half-done phase, exit 130
        raise KeyboardInterrupt from failed

    # the report is rebuilt from stored files alone, also after a failure (what finished shows)
    t_report = time.perf_counter()
    report_rc = report_main([str(out)])
    # after the build: this report's own cost shows in the next one (python -m raymsa.report DIR)
    timed("report", time.perf_counter() - t_report)
    minutes = (time.perf_counter() - t0) / 60
    if failed is not None:
        print(f"[raymsa] finished phases are kept; rerun with --resume to continue once the cause is fixed\n"
              f"[raymsa] study stopped after {minutes:.1f} min: {describe_failure(failed, out)}",
              file=sys.stderr)
        return 1
    print(f"[raymsa] study {study.name} finished in {minutes:.1f} min")
    return 0 if report_rc == 0 else 1


def _shutdown(ray) -> None:
    """Stop this driver's Ray (a local one entirely) even if a second signal arrives meanwhile."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.shutdown()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())

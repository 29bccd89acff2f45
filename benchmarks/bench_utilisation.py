"""Utilisation of a sweep of short trials: how much of the trial slots' time the trials' training
loops fill.

    python benchmarks/bench_utilisation.py [--out bench_utilisation.json] [--trials 12] [--epochs 4]
                                           [--slots 2] [--max-train 96,384] [--study fsrf_sweep]

Runs the study's own search phase (StudyRunner.search: Optuna TPE inside Tune, ASHA, actor reuse,
a checkpoint per epoch) of the study's smoke overlay (tiny FSRF) under one scenario: `--trials`
trials of up to `--epochs` epochs, `--slots` at a time, on a local Ray started like the study's
(`--slots` CPUs, dashboard on). One sweep per `--max-train` value (training samples per trial:
96 = the smoke overlay, ~3 s trials here; 384: ~4x longer trials), each in a fresh Ray session.

    utilisation = busy / (wall x slots)
    wall        = the Tune run's wall time (Tune's experiment start -> end, driver clock)
    slots       = trials at a time (max_concurrent_trials)
    busy        = two readings:
      time_total_s  sum over trials of Tune's time_total_s: the trial function's time up to its last
                    report, so including the trial's own start-up (imports, data, model)
      loops only    sum over trials of the training loop's time, from its start to its last report
                    (worker clock; the session is made right before the loop starts)

Goal: >= 0.85. The rest of the slot time is split, from Tune's callbacks and the loops' clocks,
into: before the first trial starts (Tune's start-up, the trial actors' processes), slots idle
between trials and in the tail (placement, actor reuse, Optuna's next suggestion; fewer trials left
than slots), in a trial's slot but outside its function, and in its function before its loop.
Measured on a 2-core machine: see docs/cluster.md. Takes 2-4 min.

    python benchmarks/bench_utilisation.py --from-study results/fsrf_sweep --slots 2

reads a finished study's Tune results instead and reports the same ratio for each of its Tune runs
and for the study's search + retrain phases together. A retrain trial stays busy after its last
report, testing the selected model on every scenario's grid, until it writes runs/<job>/eval.csv, so
there busy time ends at that file. Tune's timestamps are whole seconds (centred by +0.5 s), so
each span is +-0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# runnable from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray  # noqa: E402

import raymsa.search.tune as tune_mod  # noqa: E402
from raymsa.search.tune import DRIVER_RESOURCE  # noqa: E402


class Timeline(tune_mod.TrialLines):
    """The study's per-trial lines, plus the driver-side time of every trial event."""

    events: list[tuple[float, str, str]] = []

    def setup(self, **info):
        Timeline.events.append((time.time(), "experiment_start", ""))

    def on_trial_start(self, iteration, trials, trial, **info):
        Timeline.events.append((time.time(), "start", trial.trial_id))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        Timeline.events.append((time.time(), "result", trial.trial_id))

    def on_trial_complete(self, iteration, trials, trial, **info):
        Timeline.events.append((time.time(), "complete", trial.trial_id))
        super().on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration, trials, trial, **info):
        Timeline.events.append((time.time(), "complete", trial.trial_id))
        super().on_trial_error(iteration, trials, trial, **info)

    def on_experiment_end(self, trials, **info):
        Timeline.events.append((time.time(), "experiment_end", ""))


def make_timed_trial():
    """The study's trial function (raymsa.search.tune._trial, run unchanged in the worker) with a
    session that also reports, on the worker's clock, when the training loop started (the session
    is made right before `run` begins) and when each report was made."""

    def timed_trial(config, spec, data, storage=None):
        import raymsa.search.tune as t  # the worker's own import: the real _trial

        class TimedSession(t._TrialSession):
            def __init__(self):
                super().__init__()
                self.loop_start = time.time()

            def report(self, metrics, checkpoint_dir=None):
                t = time.time()
                super().report({**metrics, "loop_start": self.loop_start, "reported_at": t,
                                "previous_report_s": getattr(self, "report_s", 0.0)}, checkpoint_dir)
                self.report_s = time.time() - t

        t._TrialSession = TimedSession
        t._trial(config, spec, data, storage)

    return timed_trial


def analyse(events: list[tuple[float, str, str]], results: dict[str, list[dict]], slots: int) -> dict:
    t0 = next(t for t, kind, _ in events if kind == "experiment_start")
    t1 = max(t for t, kind, _ in events if kind in ("experiment_end", "complete"))
    wall = t1 - t0
    spans = {}
    for t, kind, tid in events:
        if kind == "start":
            spans.setdefault(tid, [t, None])
        elif kind == "complete":
            spans[tid][1] = t
    busy = sum(rows[-1]["time_total_s"] for rows in results.values() if rows)
    # the training loop only: from its start to its last report (worker clock)
    busy_loop = sum(rows[-1]["reported_at"] - rows[0]["loop_start"] for rows in results.values() if rows)
    held = sum(end - start for start, end in spans.values() if end is not None)
    first_start = min(s for s, _ in spans.values())
    last_end = max(e for _, e in spans.values())
    startup, end = (first_start - t0) * slots, (t1 - last_end) * slots
    return {
        "wall_s": wall, "slots": slots, "trials": len(spans), "busy_s": busy, "held_s": held,
        "utilisation": busy / (wall * slots),
        "busy_loop_s": busy_loop,
        "utilisation_loop": busy_loop / (wall * slots),
        "slot_occupancy": held / (wall * slots),
        "lost_s": {
            "before the first trial starts": startup,
            "slots idle between trials and in the tail": wall * slots - held - startup - end,
            "after the last trial ends": end,
            "in a trial's slot, outside its function": held - busy,
            "in a trial's function, before its loop (imports, data, setup)": busy - busy_loop,
        },
        "per_trial": {tid: {"start": round(a - t0, 3), "end": round(b - t0, 3) if b else None}
                      for tid, (a, b) in spans.items()},
        "events": [(round(t - t0, 3), kind, tid) for t, kind, tid in events],
        "epochs": sum(len(rows) for rows in results.values()),
        "mean_trial_s": busy / max(1, len(spans)),
    }


def sweep(args, max_train: int) -> dict:
    """One search phase in a fresh Ray session; its timeline and utilisation."""
    from raymsa.study.config import load_study
    from raymsa.study.runner import StudyRunner

    study, spaces, _ = load_study(args.study, smoke=True, overrides=[
        f"search.trials={args.trials}", f"train.epochs={args.epochs}", "scenarios=[{kind: intra}]",
        f"resources.max_concurrent={args.slots}", f"data.max_train={max_train}"])
    model = next(m for m in study.models if m in spaces)
    scenario = study.scenarios[0]
    Timeline.events = []
    with tempfile.TemporaryDirectory(prefix="raymsa-bench-util-") as tmp:
        out = Path(tmp) / study.name
        out.mkdir()
        ray.init(address="local", num_cpus=args.slots, resources={DRIVER_RESOURCE: 100}, include_dashboard=True,
                 configure_logging=False, _temp_dir=str(Path(tmp) / "ray"))
        try:
            runner = StudyRunner(study, spaces, out, resume=False)
            runner.load_data()
            t = time.perf_counter()
            runner.search(model, scenario)
            search_s = time.perf_counter() - t
        finally:
            ray.shutdown()
        results = {}
        for f in (runner.tune_dir / f"search__{model}__{scenario.label}").glob("*/result.json"):
            results[f.parent.name] = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    a = analyse(Timeline.events, results, args.slots)
    a.update(model=model, max_train=max_train, search_phase_s=search_s)
    a["trial_epochs"] = {rows[0]["trial_id"]: [{k: r.get(k) for k in (
        "epoch", "time_this_iter_s", "train_time_s", "pid", "loop_start", "reported_at", "time_total_s",
        "previous_report_s")} for r in rows] for rows in results.values() if rows}
    return a


def study_utilisation(study_dir: Path, slots: int) -> dict:
    """Busy / (wall x slots) of every Tune run of a finished study, and of all of them together."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for result in sorted(study_dir.glob("tune/*/*/result.json")):
        rows = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        if not rows:
            continue
        # Tune's timestamps are whole seconds, truncated: +0.5 s centres them
        start = rows[0]["timestamp"] + 0.5 - rows[0]["time_this_iter_s"]  # the trial function's start
        end = rows[-1]["timestamp"] + 0.5
        params = json.loads((result.parent / "params.json").read_text())
        if "job" in params:  # a retrain trial: busy until its final evaluation is written
            eval_csv = study_dir / "runs" / params["job"] / "eval.csv"
            if eval_csv.exists():
                end = max(end, eval_csv.stat().st_mtime)
        spans.setdefault(result.parent.parent.name, []).append((start, end))
    if not spans:
        raise SystemExit(f"{study_dir}: no Tune results under tune/*/*/result.json")

    def ratio(items: list[tuple[float, float]]) -> dict:
        wall = max(e for _, e in items) - min(s for s, _ in items)
        busy = sum(e - s for s, e in items)
        return {"trials": len(items), "busy_s": busy, "wall_s": wall, "utilisation": busy / (wall * slots)}

    return {"study_dir": str(study_dir), "slots": slots,
            "runs": {name: ratio(items) for name, items in spans.items()},
            "study": ratio([x for items in spans.values() for x in items])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_utilisation.json")
    p.add_argument("--study", default="fsrf_sweep")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--max-train", default="96,384",
                   help="training samples per trial, one sweep each (96 = the smoke overlay)")
    p.add_argument("--from-study", type=Path, default=None,
                   help="a finished study's output folder: report its Tune runs' utilisation, run nothing")
    args = p.parse_args(argv)

    if args.from_study is not None:
        res = study_utilisation(args.from_study, args.slots)
        print(f"{args.from_study}: utilisation = busy / (wall x {args.slots} slots); retrain trials busy until "
              f"their eval.csv")
        print(f"{'Tune run':<28}{'trials':>7}{'busy s':>9}{'wall s':>9}{'util':>7}")
        for name, r in [*res["runs"].items(), ("search + retrain", res["study"])]:
            print(f"{name:<28}{r['trials']:>7}{r['busy_s']:>9.0f}{r['wall_s']:>9.0f}{r['utilisation']:>7.3f}")
        Path(args.out).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.out}")
        return 0

    tune_mod.TrialLines = Timeline  # TuneRun.tuner builds its callback from this name
    tune_mod._trial = make_timed_trial()  # ... and wraps this function
    sweeps = [sweep(args, int(n)) for n in args.max_train.split(",")]

    print()
    print(f"sweeps of {args.trials} trials ({sweeps[0]['model']}, smoke overlay, up to {args.epochs} epochs, ASHA) on "
          f"{args.slots} slots; utilisation = busy / (wall x slots), goal >= 0.85")
    print(f"{'train samples':>13} {'s/trial':>8} {'wall s':>7} | {'busy: time_total_s':>18} {'util':>6} | "
          f"{'busy: loops only':>16} {'util':>6}")
    for a in sweeps:
        print(f"{a['max_train']:>13} {a['mean_trial_s']:>8.1f} {a['wall_s']:>7.1f} | {a['busy_s']:>18.1f} "
              f"{a['utilisation']:>6.3f} | {a['busy_loop_s']:>16.1f} {a['utilisation_loop']:>6.3f}")
    for a in sweeps:
        print(f"\nwhere the slot time goes, {a['max_train']} training samples "
              f"({a['wall_s']:.1f} s x {args.slots} slots = {a['wall_s'] * args.slots:.1f} s):")
        print(f"  {'training loops (start -> last report)':<62} {a['busy_loop_s']:>7.1f} s")
        for k, v in a["lost_s"].items():
            print(f"  {k:<62} {v:>7.1f} s")
    print()
    for a in sweeps:
        verdict = ("met" if a["utilisation_loop"] >= 0.85 else
                   "met by time_total_s only" if a["utilisation"] >= 0.85 else "missed")
        print(f"{a['max_train']} training samples: utilisation {a['utilisation']:.3f} (time_total_s), "
              f"{a['utilisation_loop']:.3f} (loops only): goal >= 0.85 {verdict}")
    out_json = {"benchmark": "utilisation",
                "summary": {"goal": 0.85, **{f"utilisation_{a['max_train']}": a["utilisation"] for a in sweeps},
                            **{f"utilisation_loop_{a['max_train']}": a["utilisation_loop"] for a in sweeps}},
                "sweeps": sweeps, "settings": vars(args),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(), "ray": ray.__version__}}
    Path(args.out).write_text(json.dumps(out_json, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HPO efficiency: the study's search (TPE + successive halving) against random search and against TPE
without pruning, in trial-epochs.

    nice -n 10 python benchmarks/bench_hpo.py [--out bench_hpo.json] [--seeds 0,1,2] [--trials 8]
                                              [--startup-trials 3] [--epochs 4] [--max-train 128] [--slots 2]
                                              [--study fsrf_sweep] [--scenario intra]

Each arm runs the study's own search phase (StudyRunner.search on the study's smoke overlay: tiny
model, the embedded synthetic data, one scenario), once per search seed, all in one local Ray session:

    tpe+halving   search.sampler=tpe     search.pruning=true    (the study's default)
    random        search.sampler=random  search.pruning=false   (plain random search)
    tpe           search.sampler=tpe     search.pruning=false

What it measures, per search seed s (trials in the order the sampler suggested them, trials.csv):
    cost(arm, s)    = cumulative trial-epochs (epochs each trial ran, summed) after each trial
    best(arm, s)    = best-so-far validation objective after each trial
    target(s)       = random search's final best objective with seed s
    to_target(arm)  = cost at the first trial whose best-so-far reaches target(s) (None: never)
    ratio(arm)      = to_target(arm) / to_target(random), per seed; random's own is the epochs at
                      which it found its best
    to_tpe_best     = the same against unpruned TPE's final best (what halving saves TPE)
Goal (issue 12): ratio <= 0.5 for tpe+halving. Also reported: each arm's final best and total
trial-epochs, mean over seeds. Validation objective only (what the search sees), never test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ARMS = {
    "tpe+halving": ["search.sampler=tpe", "search.pruning=true"],
    "random": ["search.sampler=random", "search.pruning=false"],
    "tpe": ["search.sampler=tpe", "search.pruning=false"],
}


def curve(trials: pd.DataFrame, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative trial-epochs, best-so-far objective) after each trial, in suggestion order."""
    t = trials.sort_values("trial")
    obj = t["objective"].to_numpy(float)
    obj = np.where(np.isfinite(obj), obj, np.inf if mode == "min" else -np.inf)
    best = np.minimum.accumulate(obj) if mode == "min" else np.maximum.accumulate(obj)
    return np.cumsum(t["epochs"].to_numpy(int)), best


def epochs_to(cost: np.ndarray, best: np.ndarray, target: float, mode: str) -> int | None:
    hit = best <= target + 1e-12 if mode == "min" else best >= target - 1e-12
    return int(cost[np.argmax(hit)]) if hit.any() else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_hpo.json")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--startup-trials", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--grace-period", type=int, default=1)
    ap.add_argument("--max-train", type=int, default=128)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--study", default="fsrf_sweep")
    ap.add_argument("--scenario", default="intra")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    import ray

    from raymsa.search.tune import DRIVER_RESOURCE
    from raymsa.study.config import load_study
    from raymsa.study.runner import StudyRunner

    common = [f"search.trials={args.trials}", f"search.startup_trials={args.startup_trials}",
              f"search.grace_period={args.grace_period}", "search.reduction_factor=2",
              f"search.max_concurrent={args.slots}", f"resources.max_concurrent={args.slots}",
              f"train.epochs={args.epochs}", "train.patience=null", f"data.max_train={args.max_train}",
              f"scenarios=[{{kind: {args.scenario}}}]"]
    runs: dict[str, dict[int, pd.DataFrame]] = {a: {} for a in ARMS}
    seconds: dict[str, float] = {a: 0.0 for a in ARMS}
    mode = "min"
    shared = None
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raymsa-bench-hpo-") as tmp:
        ray.init(address="local", num_cpus=args.slots, resources={DRIVER_RESOURCE: 100}, include_dashboard=True,
                 configure_logging=False, _temp_dir=str(Path(tmp) / "ray"))
        try:
            for seed in seeds:
                for arm, extra in ARMS.items():
                    study, spaces, _ = load_study(args.study, smoke=True,
                                                  overrides=[*common, *extra, f"search.seed={seed}"])
                    model = next(m for m in study.models if m in spaces)
                    scenario = study.scenarios[0]
                    out = Path(tmp) / f"{arm}-{seed}"
                    out.mkdir()
                    runner = StudyRunner(study, spaces, out, resume=False, log=lambda *a: None)
                    if shared is None:
                        runner.load_data()  # once: every search maps the same object-store copy
                        shared = (runner.data, runner.dataset, runner.data_source)
                    runner.data, runner.dataset, runner.data_source = shared
                    t = time.perf_counter()
                    best = runner.search(model, scenario)
                    seconds[arm] += time.perf_counter() - t
                    mode = best["objective"]["mode"]
                    runs[arm][seed] = pd.read_csv(runner.search_dir(model, scenario.label) / "trials.csv")
                    print(f"[bench_hpo] {arm:12s} seed {seed}: best valid {best['objective']['value']:.4f}, "
                          f"{int(runs[arm][seed]['epochs'].sum())} trial-epochs, {time.perf_counter() - t:.0f}s",
                          flush=True)
        finally:
            ray.shutdown()

    per_seed = []
    for seed in seeds:
        rc, rb = curve(runs["random"][seed], mode)
        target = float(rb[-1])
        base = epochs_to(rc, rb, target, mode)
        tc, tb = curve(runs["tpe"][seed], mode)
        for arm in ARMS:
            c, b = curve(runs[arm][seed], mode)
            e = epochs_to(c, b, target, mode)
            per_seed.append({"arm": arm, "seed": seed, "target": target, "final_best": float(b[-1]),
                             "total_trial_epochs": int(c[-1]), "epochs_to_target": e,
                             "ratio_to_random": None if e is None or not base else e / base,
                             "epochs_to_tpe_best": epochs_to(c, b, float(tb[-1]), mode),
                             "curve": {"trial_epochs": c.tolist(), "best_so_far": b.tolist()}})
    summary = {}
    for arm in ARMS:
        rows = [r for r in per_seed if r["arm"] == arm]
        ratios = [r["ratio_to_random"] for r in rows if r["ratio_to_random"] is not None]
        summary[arm] = {
            "reached_target": f"{len(ratios)} of {len(rows)} seeds",
            "mean_ratio_to_random": float(np.mean(ratios)) if ratios else None,
            "median_ratio_to_random": float(np.median(ratios)) if ratios else None,
            "mean_epochs_to_target": float(np.mean([r["epochs_to_target"] for r in rows
                                                    if r["epochs_to_target"] is not None])) if ratios else None,
            "mean_final_best": float(np.mean([r["final_best"] for r in rows])),
            "epochs_to_tpe_best": [r["epochs_to_tpe_best"] for r in rows],
            "mean_total_trial_epochs": float(np.mean([r["total_trial_epochs"] for r in rows])),
            "search_seconds": round(seconds[arm], 1),
        }
    report = {"args": vars(args), "objective_mode": mode, "summary": summary, "per_seed": per_seed,
              "wall_s": round(time.perf_counter() - t_all, 1)}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\ntrial-epochs to reach random search's final best (validation {mode}), "
          f"{len(seeds)} search seeds, {args.trials} trials x <= {args.epochs} epochs:")
    for arm, s in summary.items():
        mr = "—" if s["mean_ratio_to_random"] is None else f"{s['mean_ratio_to_random']:.2f}"
        print(f"  {arm:12s} reached {s['reached_target']}, mean ratio to random {mr}, "
              f"mean final best {s['mean_final_best']:.4f}, mean trial-epochs {s['mean_total_trial_epochs']:.0f}, "
              f"trial-epochs to unpruned TPE's best {s['epochs_to_tpe_best']}, {s['search_seconds']:.0f}s")
    print(f"wrote {args.out} ({report['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

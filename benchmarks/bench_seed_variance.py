"""How much of a verdict's uncertainty is seed noise, under two training settings, measured in one run.

    python benchmarks/bench_seed_variance.py [--study fsrf_sweep] [--models fsrf_default,late_fusion]
        [--scenario intra] [--seeds 1111,1112,1113,1114,1115] [--jobs 2]
        [--setting NAME=key=value,key=value ...] [--check-study DIR] [--out bench_seed_variance.json]

Why: make study's headline rows stay inconclusive because the per-seed mean difference between two
models varies over seeds (sd 0.035 MAE at 36921d2, README), not because the test set is small. A
training setting that lets each run finish its descent (longer patience, a smaller min_delta, a
later cap) should spread less over seeds, and costs more per seed. This benchmark measures both.

Each run is the study's own retrain of a model with its default config (the study file's train
block, its base_train_config, the same final evaluation and test masks per seed) with the setting's
overrides on top, run in a process of its own with one torch thread, --jobs at a time. Printed per
setting: test MAE (mean over the scenario's levels) per model as mean +- sd over seeds; the paired
per-seed difference models[0] - models[1], its mean and sd; epochs run and selected; seconds per
run. Then the ratio of the two settings' difference variances with its 95 % F interval
(scipy.stats.f; the seeds are the same on both sides but each side's runs are independent draws of
the training noise) and the ratio of their cost; their product is the ratio of compute needed for
the same standard error of the difference (seeds needed scale with the variance).

The settings default to the shipped one ("shipped": the study file unchanged) and one candidate;
--setting replaces them (NAME=overrides, overrides comma-separated, "" for none). --check-study
compares the setting without overrides (NAME=)'s runs with a finished study's runs of the same labels and seeds:
equal code and seed must give the same number (it checks that this benchmark runs what the study runs).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_study_cost import own_test_mae  # noqa: E402  (the same reading of a run's eval.csv)

DEFAULT_SETTINGS = ["shipped=", "patient=train.patience=4,train.min_delta=0.002,train.epochs=15"]


def _own_mae(csv: Path) -> float:
    return float(own_test_mae(csv)["value"].mean())


def one_run(job: dict) -> dict:
    """One retrain in this (fresh) process: the study's config for the label, the setting on top."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from raymsa.config import apply_overrides
    from raymsa.study.config import load_study
    from raymsa.train.config import parse_train_config
    from raymsa.train.loop import FinalEval, run
    from raymsa.train.session import LocalSession

    study, _, path = load_study(job["study"])
    scenario = next(s for s in study.scenarios if s.label == job["scenario"])
    base = study.base_train_config(job["label"], scenario)
    base["train"]["seed"] = job["seed"]
    apply_overrides(base, job["overrides"], source="--setting")
    cfg = parse_train_config(base, f"{path}: models.{job['label']} + --setting {job['setting']}")
    out = Path(job["dir"])
    out.mkdir(parents=True, exist_ok=True)
    fe = FinalEval(scenarios=[scenario], out_csv=out / "eval.csv",
                   meta={"model": job["label"], "scenario": scenario.label, "seed": job["seed"], "config_id": "default"})
    t0 = time.perf_counter()
    res = run(cfg, cfg.data.load(), LocalSession(out / "train", resume=False, log=False), final_eval=fe, verbose=False)
    return {**{k: job[k] for k in ("setting", "label", "seed")}, "seconds": time.perf_counter() - t0,
            "mae": _own_mae(out / "eval.csv"), "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
            "stop_reason": res.stop_reason}


def parse_settings(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        name, eq, rest = item.partition("=")
        if not eq or not name.strip():
            raise SystemExit(f"error: --setting {item!r}: expected NAME=key=value,key=value (or NAME= for none)")
        out[name.strip()] = [x.strip() for x in rest.split(",") if x.strip()]
    if len(out) != 2:
        raise SystemExit(f"error: --setting: give exactly two settings, got {list(out)}")
    return out


def summarise(runs: pd.DataFrame, models: list[str]) -> dict:
    from scipy import stats

    out = {}
    for name, g in runs.groupby("setting", sort=False):
        piv = g.pivot(index="seed", columns="label", values="mae")
        d = piv[models[0]] - piv[models[1]]
        out[name] = {
            "per_model": {m: {"mean": float(piv[m].mean()), "sd": float(piv[m].std(ddof=1))} for m in models},
            "diff": {"mean": float(d.mean()), "sd": float(d.std(ddof=1)), "n": int(d.notna().sum()),
                     "per_seed": {int(k): float(v) for k, v in d.items()}},
            "epochs_run": {m: g[g.label == m]["epochs_run"].tolist() for m in models},
            "best_epoch": {m: g[g.label == m]["best_epoch"].tolist() for m in models},
            "stop_reason": {m: g[g.label == m]["stop_reason"].tolist() for m in models},
            "seconds_per_run": float(g["seconds"].mean()),
        }
    a, b = list(out)
    va, vb = out[a]["diff"]["sd"] ** 2, out[b]["diff"]["sd"] ** 2
    na, nb = out[a]["diff"]["n"], out[b]["diff"]["n"]
    ratio = vb / va if va > 0 else math.inf
    # Var_b / Var_a ~ F(nb-1, na-1) x the true ratio
    lo = ratio / stats.f.ppf(0.975, nb - 1, na - 1)
    hi = ratio / stats.f.ppf(0.025, nb - 1, na - 1)
    out["ratio"] = {"variance": ratio, "variance_ci95": [lo, hi], "sd": math.sqrt(ratio),
                    "cost": out[b]["seconds_per_run"] / out[a]["seconds_per_run"], "of": f"{b} / {a}"}
    # seeds for a given standard error scale with the variance, so compute for it with variance x cost
    out["ratio"]["cost_for_same_se"] = out["ratio"]["variance"] * out["ratio"]["cost"]
    out["ratio"]["cost_for_same_se_ci95"] = [x * out["ratio"]["cost"] for x in (lo, hi)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", default="fsrf_sweep")
    p.add_argument("--models", default="fsrf_default,late_fusion", help="two labels of the study: diff = first - second")
    p.add_argument("--scenario", default="intra")
    p.add_argument("--seeds", default="1111,1112,1113,1114,1115")
    p.add_argument("--setting", action="append", default=None, help="NAME=key=value,... (twice)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--check-study", default=None, help="a finished study folder with the shipped setting's runs")
    p.add_argument("--storage", default=None)
    p.add_argument("--out", default="bench_seed_variance.json")
    args = p.parse_args(argv)

    models = [m.strip() for m in args.models.split(",")]
    if len(models) != 2:
        raise SystemExit(f"error: --models: give two labels, got {models}")
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = parse_settings(args.setting or DEFAULT_SETTINGS)
    from raymsa.study.config import load_study

    study, _, path = load_study(args.study)
    unknown = [m for m in models if m not in study.models]
    if unknown:
        raise SystemExit(f"error: --models: {unknown} not in {path} (models: {list(study.models)})")
    if args.scenario not in [s.label for s in study.scenarios]:
        raise SystemExit(f"error: --scenario: {args.scenario} not in {path}")
    storage = Path(args.storage or tempfile.mkdtemp(prefix="bench-seed-variance-"))
    jobs = [{"study": args.study, "scenario": args.scenario, "label": m, "seed": s, "setting": name, "overrides": ov,
             "dir": str(storage / name / f"{m}__seed{s}")}
            for name, ov in settings.items() for s in seeds for m in models]
    print(f"[bench] {len(jobs)} runs ({len(settings)} settings x {len(models)} models x {len(seeds)} seeds), "
          f"{args.jobs} at a time, study {path}, scenario {args.scenario}; storage {storage}", flush=True)
    for name, ov in settings.items():
        print(f"[bench]   setting {name}: {' '.join(ov) or '(the study file unchanged)'}", flush=True)
    t0 = time.perf_counter()
    rows = []
    # spawn: each run imports torch afresh with one thread, as a study's trial process does
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(one_run, jobs):
            rows.append(r)
            print(f"[bench]   {r['setting']:>8s} {r['label']:>14s} seed {r['seed']}: test MAE {r['mae']:.4f}, "
                  f"{r['epochs_run']} epochs ({r['stop_reason']}), selected {r['best_epoch']}, {r['seconds']:.0f} s",
                  flush=True)
    runs = pd.DataFrame(rows)
    runs["setting"] = pd.Categorical(runs["setting"], list(settings))
    res = summarise(runs.sort_values(["setting", "label", "seed"]), models)
    wall = time.perf_counter() - t0
    for name in settings:
        s = res[name]
        pm = ", ".join(f"{m} {v['mean']:.4f} +- {v['sd']:.4f}" for m, v in s["per_model"].items())
        print(f"[bench] {name}: test MAE {pm}; {models[0]} - {models[1]} per seed: mean {s['diff']['mean']:+.4f}, "
              f"sd {s['diff']['sd']:.4f} over {s['diff']['n']} seeds; {s['seconds_per_run']:.0f} s per run")
    r = res["ratio"]
    print(f"[bench] {r['of']}: variance of the per-seed difference x{r['variance']:.2f} "
          f"(95 % F interval {r['variance_ci95'][0]:.2f} - {r['variance_ci95'][1]:.2f}; sd x{r['sd']:.2f}), "
          f"cost per run x{r['cost']:.2f}; compute for the same standard error of the difference "
          f"x{r['cost_for_same_se']:.2f} ({r['cost_for_same_se_ci95'][0]:.2f} - {r['cost_for_same_se_ci95'][1]:.2f})")
    check = None
    if args.check_study:
        plain = [n for n, ov in settings.items() if not ov]
        if not plain:
            raise SystemExit("error: --check-study: no setting without overrides (NAME=) to check against the study")
        first = plain[0]
        got = runs[runs.setting == first]
        diffs = []
        for _, g in got.iterrows():
            f = Path(args.check_study) / "runs" / f"{g['label']}__{args.scenario}__seed{g['seed']}" / "eval.csv"
            if f.exists():
                diffs.append(abs(_own_mae(f) - g["mae"]))
        check = {"runs": len(diffs), "max_abs_diff": max(diffs) if diffs else None}
        print(f"[bench] check against {args.check_study} ({first} setting): {len(diffs)} runs found, largest "
              f"|test MAE difference| {check['max_abs_diff']}")
    Path(args.out).write_text(json.dumps({"study": str(path), "scenario": args.scenario, "models": models,
                                          "seeds": seeds, "settings": settings, "wall_s": wall, "check": check,
                                          "runs": rows, **res}, indent=1))
    print(f"[bench] wrote {args.out} ({wall:.0f} s wall); run folders under {storage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

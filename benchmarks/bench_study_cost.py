"""Wall time of the same study on this checkout and on an older commit, one after the other on the
same machine, and whether the test results stayed the same.

    python benchmarks/bench_study_cost.py [--against b8e9dfd] [--storage DIR] [--out bench_study_cost.json]
                                          [--scenarios intra,inter] [--seeds N] [--order old-new|new-old]

The study is benchmarks/study_cost.yaml (fsrf_sweep's budget at b8e9dfd, frozen). The older commit
runs from a git worktree this script creates (removed afterwards), with this checkout's Python
(the same venv) and PYTHONPATH set to the worktree; this checkout runs with PYTHONPATH set to
itself. Each side is `python -m raymsa.study <yaml> --storage <its folder>` (its own Ray, its own
report); the synthetic data is generated once before either starts, so neither pays for it. This
checkout's side also gets `--set data.test_size=686 --set train.schedule=cosine` (SAME_WORK below:
what b8e9dfd did without being told); `--new-set KEY=VALUE` replaces that list, `--new-set none`
empties it (this commit's defaults: a 3x larger test split and the plateau schedule).

Printed: both walls and new / old; then the results: each (model, scenario, seed) run's test MAE
(mean over its own scenario's levels) on both sides, paired, with the mean difference and its 95 %
t interval over runs (scipy.stats), and the largest |difference|. The selection, training and
masks are seeded, so equal code gives equal numbers; a change that only reorders floating-point
sums moves them by rounding, far inside seed noise (the study's own std over seeds is printed
beside it).

--scenarios / --seeds run a REDUCED budget (a subset of the scenarios, the first N seeds): a quick
check, labelled as such in the output, never the figure of the full study.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks" / "study_cost.yaml"


def reduced_yaml(scenarios: list[str] | None, seeds: int | None, folder: Path) -> tuple[Path, str]:
    """The study file to run: study_cost.yaml itself, or a reduced copy (name study_cost_reduced)."""
    if not scenarios and not seeds:
        return STUDY, yaml.safe_load(STUDY.read_text())["name"]
    cfg = yaml.safe_load(STUDY.read_text())
    if scenarios:
        unknown = set(scenarios) - {s["kind"] for s in cfg["scenarios"]}
        if unknown:
            raise SystemExit(f"error: --scenarios: {sorted(unknown)} not in {STUDY} "
                             f"({[s['kind'] for s in cfg['scenarios']]})")
        cfg["scenarios"] = [s for s in cfg["scenarios"] if s["kind"] in scenarios]
    if seeds:
        cfg["seeds"] = cfg["seeds"][:seeds]
    cfg["name"] = "study_cost_reduced"
    path = folder / "study_cost_reduced.yaml"
    # the search space resolves beside the study file first: keep it resolving to the repo's own
    path.write_text("# REDUCED copy of benchmarks/study_cost.yaml written by bench_study_cost.py\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path, cfg["name"]


# What b8e9dfd did implicitly and this commit does only when told: its embedded test split was
# MOSI's real size (686; issue 24 made the default 2058, 3x the final evaluation) and its LR schedule
# was warm-up then cosine to 0 at the cap (issue 19 made reduce-on-plateau the default). Without
# these the two sides would not do the same work: the first run of this benchmark without them
# measured new/old 0.97 with final evaluation 52 % of the retrains' slot time and test MAE +0.077.
SAME_WORK = ["data.test_size=686", "train.schedule=cosine"]


def run_study(tree: Path, study: Path, storage: Path, log: Path, sets: list[str] = ()) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    extra = [a for kv in sets for a in ("--set", kv)]
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "raymsa.study", str(study), "--storage", str(storage), *extra],
                            cwd=tree, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"error: the study on {tree} failed (exit {rc}); see {log}")
    return wall


def own_test_mae(csv: Path):
    """A run's eval.csv rows of test MAE under its own scenario, one per level."""
    import pandas as pd

    df = pd.read_csv(csv, dtype={"level": str, "seed": str})
    return df[(df["split"] == "test") & (df["metric"] == "MAE") & (df["eval_scenario"] == df["scenario"])]


def run_mae(study_dir: Path) -> dict[tuple[str, str, str], float]:
    """(model, scenario, seed) -> test MAE, mean over the levels of the run's own scenario."""
    out = {}
    for f in sorted((study_dir / "runs").glob("*/eval.csv")):
        own = own_test_mae(f)
        if len(own):
            r = own.iloc[0]
            out[(r["model"], r["scenario"], r["seed"])] = float(own["value"].mean())
    return out


def compare(old: dict, new: dict) -> dict:
    import numpy as np
    from scipy import stats

    keys = sorted(set(old) & set(new))
    if not keys:
        raise SystemExit("error: no run with results on both sides")
    d = np.array([new[k] - old[k] for k in keys])
    res = {"runs": len(keys), "mean_diff": float(d.mean()), "max_abs_diff": float(np.abs(d).max())}
    if len(keys) > 1 and d.std(ddof=1) > 0:
        lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        res["ci95"] = [float(lo), float(hi)]
    else:
        res["ci95"] = [float(d.mean()), float(d.mean())]
    # seed noise: std over seeds of each (model, scenario)'s MAE on the old side, averaged
    groups: dict[tuple[str, str], list[float]] = {}
    for (m, s, _), v in old.items():
        groups.setdefault((m, s), []).append(v)
    stds = [np.std(v, ddof=1) for v in groups.values() if len(v) > 1]
    res["seed_std"] = float(np.mean(stds)) if stds else None
    res["pairs"] = [{"model": k[0], "scenario": k[1], "seed": k[2], "old": old[k], "new": new[k]} for k in keys]
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", default="b8e9dfd", help="the older commit (default b8e9dfd)")
    p.add_argument("--storage", default=None, help="folder for both sides' results (default: a temporary one, kept)")
    p.add_argument("--scenarios", default=None, help="REDUCED: only these scenario kinds, e.g. intra")
    p.add_argument("--seeds", type=int, default=None, help="REDUCED: only the first N seeds")
    p.add_argument("--order", choices=["old-new", "new-old"], default="old-new")
    p.add_argument("--new-set", action="append", default=None, metavar="KEY=VALUE",
                   help="--set for this checkout's side only (default: " + " ".join(SAME_WORK) + ", b8e9dfd's "
                        "test size and schedule; pass --new-set none for the shipped defaults)")
    p.add_argument("--out", default="bench_study_cost.json")
    args = p.parse_args(argv)

    storage = Path(args.storage or tempfile.mkdtemp(prefix="bench-study-cost-")).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    scenarios = args.scenarios.split(",") if args.scenarios else None
    new_sets = SAME_WORK if args.new_set is None else [kv for kv in args.new_set if kv != "none"]
    study, name = reduced_yaml(scenarios, args.seeds, storage)
    reduced = study != STUDY
    label = "REDUCED budget (" + ", ".join(filter(None, [f"scenarios {args.scenarios}" if scenarios else "",
                                                          f"first {args.seeds} seed(s)" if args.seeds else ""])) \
        + "): a quick check, not the full study's figure" if reduced else "full budget (benchmarks/study_cost.yaml)"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    old_tree = storage / "old-tree"
    if old_tree.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.against], cwd=ROOT, check=True,
                   capture_output=True)
    print(f"[bench] {label}; old = {args.against} (worktree {old_tree}), new = {commit}"
          f"{' + uncommitted changes' if dirty else ''}; storage {storage}", flush=True)
    try:
        # the synthetic data is generated (and cached) once, before either side is timed
        ts = next((kv.split("=", 1)[1] for kv in new_sets if kv.startswith("data.test_size=")), None)
        for code in ("from raymsa.data.default import load_default; load_default('mosi')",
                     "from raymsa.train.config import DataConfig; DataConfig(like='mosi'"
                     + (f", test_size={int(ts)}" if ts else "") + ").load()"):
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           check=True)
        sides = {"old": old_tree, "new": ROOT}
        walls = {}
        for side in (["old", "new"] if args.order == "old-new" else ["new", "old"]):
            sets = "".join(f" --set {kv}" for kv in new_sets) if side == "new" else ""
            print(f"[bench] {side}: python -m raymsa.study {study}{sets} ...", flush=True)
            walls[side] = run_study(sides[side], study, storage / side, storage / f"{side}.log",
                                    new_sets if side == "new" else [])
            print(f"[bench] {side}: {walls[side]:.0f} s wall", flush=True)
        results = compare(run_mae(storage / "old" / name), run_mae(storage / "new" / name))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    ratio = walls["new"] / walls["old"]
    print(f"[bench] {label}")
    print(f"[bench] wall: old {args.against} {walls['old']:.0f} s, new {commit} {walls['new']:.0f} s, "
          f"new / old = {ratio:.2f}")
    ci = results["ci95"]
    print(f"[bench] test MAE (mean over own levels), new - old over {results['runs']} paired runs: mean "
          f"{results['mean_diff']:+.2e}, 95 % t interval [{ci[0]:+.2e}, {ci[1]:+.2e}], largest |diff| "
          f"{results['max_abs_diff']:.2e}; " + (f"seed std of the old runs {results['seed_std']:.3f}"
                                                 if results["seed_std"] is not None else "one seed: no seed std"))
    Path(args.out).write_text(json.dumps({"label": label, "reduced": reduced, "against": args.against, "commit": commit,
                                          "dirty": dirty, "new_set": new_sets, "walls_s": walls, "ratio": ratio, "order": args.order,
                                          "metrics": results, "storage": str(storage)}, indent=1))
    print(f"[bench] wrote {args.out}; study folders under {storage} (old/, new/, logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The verdicts of comparisons.csv checked by simulation (issue 19.5, 24.4): fabricated studies go
through the report's own code (raymsa.report.verdicts.headline_decisions), with adaptive seeding
simulated round by round as the runner does it.

    python benchmarks/bench_verdicts.py                         (500 null + 500 power studies, ~10 min on 2 cores)
    python benchmarks/bench_verdicts.py --test-size 686 --studies 200
    python benchmarks/bench_verdicts.py --from-study results/fsrf_intra   (variances from its preds.npz)

Each fabricated study: a reference and two models (a, b) in two scenarios, so the headline family
has 4 rows; seed plan initial 3, step 2, max 9 (looks at 3, 5, 7, 9 seeds). Per-sample variances by
default from issue 24's measurement (sd of the paired per-sample differences 0.43, cross-seed
correlation 0.13) and an assumed seed sd of the mean difference 0.01 (flags to change them).

Reported:
- null: a and b are the reference's model (true difference 0): the share of studies with any false
  better/worse claim on a headline row (family-wise), with its Clopper-Pearson 95 % interval
  (scipy.stats.binomtest); the share of rows called equivalent; seeds used; why rows stopped;
- power: a and b worse than the reference by 1.5 x the MAE margin: the share of headline rows
  called worse;
- identical: a's predictions are the reference's: diff 0 and "equivalent" on every headline row.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

from raymsa.report.load import SeedPlan
from raymsa.report.simulate import Variances, fabricate, run_adaptive
from raymsa.report.verdicts import DEFAULT_MARGINS, EQUIVALENT

SCENARIOS = ("s1", "s2")


def variances_from_study(path: str) -> Variances:
    """Mean variance components over a study's headline rows (those with per-sample predictions)."""
    from raymsa.report.compare import headline_frame
    from raymsa.report.load import load_study
    from raymsa.report.stats import Cube
    from raymsa.report.verdicts import Components

    res = load_study(path)
    _, comps = headline_frame(res, Cube(res, "test"))
    comps = [c for c in comps if c is not None]
    if not comps:
        raise SystemExit(f"error: {path}: no headline row with per-sample predictions (preds.npz)")
    mean = Components(seed=float(np.mean([c.seed for c in comps])), shared=float(np.mean([c.shared for c in comps])),
                      resid=float(np.mean([c.resid for c in comps])), n_samples=comps[0].n_samples, rho=0.0)
    return Variances.from_components(mean)


def binom(k: int, n: int) -> dict:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"k": k, "n": n, "rate": k / n, "ci95": [float(ci.low), float(ci.high)]}


def simulate(kind: str, delta: float, n: int, plan: SeedPlan, var: Variances, n_test: int, base: int) -> dict:
    fam_false, rows, called, equiv, seeds, why = 0, 0, 0, 0, [], collections.Counter()
    for k in range(n):
        o = run_adaptive({"ref": 0.0, "a": delta, "b": delta}, SCENARIOS, plan, var, n_test, base + k)
        wrong = [v in ("better", "worse") for v in o.verdicts] if delta == 0 else [v == "better" for v in o.verdicts]
        fam_false += any(wrong)
        rows += len(o.verdicts)
        called += sum(v == "worse" for v in o.verdicts)
        equiv += sum(v == EQUIVALENT for v in o.verdicts)
        seeds += o.n_seeds
        why.update(r.split(" (")[0] if r.startswith("resolved") or r.startswith("at the") else r for r in o.reasons)
    out = {"kind": kind, "true_difference": delta, "studies": n, "headline_rows": rows,
           "familywise_false_claims": binom(fam_false, n),
           "rows_called_worse": binom(called, rows), "rows_equivalent": binom(equiv, rows),
           "mean_seeds_per_row": float(np.mean(seeds)), "stop_reasons": dict(why)}
    return out


def identical(plan: SeedPlan, var: Variances, n_test: int, n: int) -> dict:
    from raymsa.report.stats import Cube
    from raymsa.report.verdicts import headline_decisions
    from raymsa.report.compare import headline_frame

    ok = 0
    for k in range(n):
        nseeds = {(m, s): plan.initial for m in ("ref", "a") for s in SCENARIOS}
        res = fabricate({"ref": 0.0, "a": 0.0}, SCENARIOS, nseeds, var, n_test, np.random.default_rng(10_000 + k), plan)
        for (m, sc, seed), rp in list(res.preds.items()):
            if m == "ref":
                res.preds[("a", sc, seed)] = rp
        r = res.results
        refrows = r[r.model == "ref"].copy().assign(model="a")
        res.results = __import__("pandas").concat([r[r.model == "ref"], refrows], ignore_index=True)
        cube = Cube(res, "test")
        f, _ = headline_frame(res, cube)
        dec = headline_decisions(res, cube)
        ok += bool((f["diff"] == 0).all() and all(d.verdict == EQUIVALENT for d in dec))
    return {"kind": "identical", "studies": n, "all_rows_diff0_and_equivalent": binom(ok, n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--test-size", type=int, nargs="+", default=[686, 2000])
    ap.add_argument("--sd", type=float, default=Variances.sd)
    ap.add_argument("--rho", type=float, default=Variances.rho)
    ap.add_argument("--seed-sd", type=float, default=Variances.seed_sd)
    ap.add_argument("--from-study", help="take sd, rho and seed sd from this study's preds.npz (headline rows)")
    ap.add_argument("--plan", default="3,9,2", help="initial,max,step seeds")
    ap.add_argument("--kinds", default="null,power,identical", help="which simulations, comma-separated")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args(argv)
    var = variances_from_study(a.from_study) if a.from_study else Variances(a.sd, a.rho, a.seed_sd)
    i, mx, st = (int(x) for x in a.plan.split(","))
    plan = SeedPlan(i, mx, st)
    margin = DEFAULT_MARGINS["MAE"]
    report = {"variances": var.__dict__, "source": a.from_study or "issue 24 figures + assumed seed sd",
              "plan": {"initial": i, "max": mx, "step": st}, "margin": margin, "runs": []}
    print(f"variances {var} ({report['source']}); plan {plan.looks}; MAE margin {margin}", flush=True)
    for n_test in a.test_size:
        t0 = time.perf_counter()
        kinds, runs = a.kinds.split(","), []
        if "null" in kinds:
            runs.append(simulate("null", 0.0, a.studies, plan, var, n_test, 0))
        if "power" in kinds:
            runs.append(simulate("power", 1.5 * margin, a.studies, plan, var, n_test, 100_000))
        if "identical" in kinds:
            runs.append(identical(plan, var, n_test, max(20, a.studies // 25)))
        for r in runs:
            r["test_size"] = n_test
            print(json.dumps(r), flush=True)
        print(f"test size {n_test}: {time.perf_counter() - t0:.0f} s", flush=True)
        report["runs"] += runs
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

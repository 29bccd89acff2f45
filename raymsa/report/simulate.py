"""Fabricated studies for checking the verdicts by simulation (benchmarks/bench_verdicts.py, tests) and
for planning (python -m raymsa.report plan).

A fabricated study holds, per model, scenario and seed, absolute test errors built from variance
components of the paired per-sample MAE differences (verdicts.Components):

    ae[m, s, i] = 1 + c_i + g[m, i] + h[m, s, i] + a[m, s] + delta[m]   (clipped at 0)

c_i a sample's difficulty (the same for every model; cancels in a difference), g a model's own
per-sample effect (the same for every seed: the "shared" part), h a run's per-sample noise (the
"resid" part), a a seed's shift. Predictions are label + ae, so each run's MAE is mean(ae). The study
lives in memory (StudyResults without files) and goes through the report's own code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from raymsa.report.load import RunPreds, Scenario, SeedPlan, Study, StudyResults

LEVEL = "0"


@dataclass(frozen=True)
class Variances:
    """Of the paired difference d = model - reference, per sample: within-seed sd and its cross-seed
    correlation rho, and the sd of a seed's shift of the mean difference."""

    sd: float = 0.43  # issue 24: 0.38 and 0.48 measured on fsrf vs late_fusion, 686 samples
    rho: float = 0.13  # issue 24: the per-sample differences' correlation across seeds
    seed_sd: float = 0.01  # assumed (see docs/report.md); --from-study measures it

    @classmethod
    def from_components(cls, c) -> Variances:
        within = c.shared + c.resid
        return cls(sd=math.sqrt(within), rho=c.shared / within if within > 0 else 0.0, seed_sd=math.sqrt(c.seed))


def fabricate(models: dict[str, float], scenarios: tuple[str, ...], n_seeds: dict[tuple[str, str], int],
              var: Variances, n_test: int, rng: np.random.Generator, plan: SeedPlan | None = None,
              reference: str = "ref", seeds0: int = 1111) -> StudyResults:
    """models: label -> true MAE difference against the reference (the reference's own entry: 0).
    n_seeds: (model, scenario) -> seeds run (consecutive from seeds0). The same rng state gives the
    same study; a run's numbers do not depend on how many seeds the others got."""
    study = Study(name="fabricated", dataset="mosi", data_source="simulate", models=tuple(models),
                  reference_model=reference, seeds=tuple(range(seeds0, seeds0 + (plan.initial if plan else 3))),
                  smoke=False, scenarios=tuple(Scenario(s, "intra", (LEVEL,), (0.0,)) for s in scenarios),
                  objective={"metric": "MAE", "mode": "min"}, created="", seed_plan=plan)
    return _fill(study, models, n_seeds, var, n_test, rng, seeds0)


def _fill(study: Study, models, n_seeds, var: Variances, n_test: int, rng, seeds0: int) -> StudyResults:
    # each component per model gets half the difference's variance
    g_sd, h_sd = math.sqrt(var.rho / 2) * var.sd, math.sqrt((1 - var.rho) / 2) * var.sd
    a_sd = var.seed_sd / math.sqrt(2)
    max_s = max(max(n_seeds.values()), study.seed_plan.max if study.seed_plan else 0)
    y = rng.uniform(-3, 3, n_test)
    rows, preds = [], {}
    for sc in study.scenarios:
        c = rng.normal(0, 0.4, n_test)
        for m, delta in models.items():
            g = rng.normal(0, g_sd, n_test)
            h = rng.normal(0, h_sd, (max_s, n_test))  # drawn for every seed: a run's noise is fixed
            a = rng.normal(0, a_sd, max_s)
            for j in range(n_seeds[(m, sc.name)]):
                ae = np.maximum(1.0 + c + g + h[j] + a[j] + delta, 0.0)
                s = seeds0 + j
                p = y + ae
                preds[(m, sc.name, s)] = RunPreds(labels=y, index=np.arange(n_test), preds={LEVEL: p}, source=Path("-"))
                rows.append((m, sc.name, sc.name, LEVEL, s, "test", "MAE", float(ae.mean()), "x", "unknown"))
    results = pd.DataFrame(rows, columns=["model", "scenario", "eval_scenario", "level", "seed", "split",
                                          "metric", "value", "config_id", "knowledge"])
    return StudyResults(dir=Path("-"), study=study, results=results, best={}, preds=preds)


@dataclass
class Outcome:
    verdicts: list[str]  # final headline verdicts, in headline order
    diffs: list[float]
    n_seeds: list[int]
    reasons: list[str]
    rounds: int


def run_adaptive(models: dict[str, float], scenarios: tuple[str, ...], plan: SeedPlan, var: Variances,
                 n_test: int, seed: int) -> Outcome:
    """One fabricated study with adaptive seeding as the runner does it: initial seeds for every run,
    then rounds adding plan.step seeds to the model and the reference of every open headline decision."""
    from raymsa.report.stats import Cube
    from raymsa.report.verdicts import headline_decisions

    ref = "ref"
    n = {(m, s): plan.initial for m in models for s in scenarios}
    rounds = 0
    while True:
        res = fabricate(models, scenarios, n, var, n_test, np.random.default_rng(seed), plan, ref)
        dec = headline_decisions(res, Cube(res, "test"))
        grow = {(x, d.scenario) for d in dec if d.open for x in (d.model, d.reference)}
        if not grow:
            break
        for k in grow:
            n[k] = min(n[k] + plan.step, plan.max)
        rounds += 1
    return Outcome(verdicts=[d.verdict for d in dec], diffs=[], n_seeds=[d.n_seeds for d in dec],
                   reasons=[d.reason for d in dec], rounds=rounds)

"""python -m raymsa.report plan DIR --margin 0.02: before buying runs, what the study's test set and
seeds can resolve (docs/report.md, "Planning").

From a finished or smoke study's preds.npz: per headline comparison, the variance components of the
paired per-sample differences (verdicts.Components), then the seeds at which a zero difference would
be called equivalent within +-margin with 80 % power at the final look's level, and the test-set
size at which that becomes possible at the seed plan's cap; the cost in run-minutes from the
runs' run.json ('seconds': each run's training loop time).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from raymsa.report.load import StudyResults

def run_minutes(res: StudyResults) -> tuple[dict[tuple[str, str], float], str]:
    """Mean minutes of one retrain run per (model, scenario), from each run's run.json ('seconds':
    the training loop's time up to its final evaluation). timing.csv cannot say it: its retrain
    rows are keyed by Tune trial, not by run."""
    out: dict[tuple[str, str], list[float]] = {}
    for rj in sorted((res.dir / "runs").glob("*/run.json")):
        try:
            d = json.loads(rj.read_text())
        except ValueError:
            continue
        sec = d.get("seconds")
        parts = rj.parent.name.split("__")
        if isinstance(sec, (int, float)) and len(parts) >= 3:
            out.setdefault((parts[0], parts[1]), []).append(float(sec) / 60)
    if out:
        return {k: sum(v) / len(v) for k, v in out.items()}, "the runs' run.json (training loop seconds per run)"
    return {}, "no run.json with seconds (runs from before they were recorded): cost unknown"


def plan_rows(res: StudyResults, margin: float | None) -> tuple[pd.DataFrame, str]:
    from raymsa.report.compare import headline_frame
    from raymsa.report.stats import Cube
    from raymsa.report import verdicts as V

    frame, comps = headline_frame(res, Cube(res, "test"))
    plan = V.plan_of(res.study)
    m_head = max(len(frame), 1)
    level = float(V.spending(plan)[-1]) / m_head
    minutes, source = run_minutes(res)
    rows = []
    for r, c in zip(frame.itertuples(), comps):
        mg = margin if margin is not None else r.margin
        if c is None or not math.isfinite(r.se):
            continue
        scale = 1.0  # as verdicts.decide: projections from the unbiased components
        need = V.seeds_needed(c, scale, 0.0, mg, level)
        n_at_cap = V.samples_needed(c, scale, plan.max, mg, level)
        per_run = minutes.get((r.model, r.scenario), math.nan) + minutes.get((r.reference, r.scenario), math.nan)
        rows.append({"model": r.model, "reference": r.reference, "scenario": r.scenario, "metric": r.metric,
                     "margin": mg, "n_seeds": r.n_seeds, "n_samples": r.n_samples, "rho": c.rho,
                     "floor_now": V.z_one_sided(level) * r.se,
                     "floor_limit": V.z_one_sided(level) * math.sqrt(scale * c.shared / c.n_samples),
                     "seeds_needed": need, "test_size_needed_at_cap": n_at_cap, "cap": plan.max,
                     "minutes_per_seed": per_run,
                     "minutes_for_seeds_needed": per_run * need if math.isfinite(need) else math.nan})
    return pd.DataFrame(rows), source


def main_plan(argv: list[str]) -> int:
    import argparse
    import sys

    from raymsa.report.load import ReportError, load_study
    from raymsa.report.render import table_markdown, Table

    ap = argparse.ArgumentParser(prog="python -m raymsa.report plan",
                                 description="Per headline comparison: seeds needed to resolve the margin and "
                                             "the test-set size at which it becomes possible, with run cost.")
    ap.add_argument("dir", help="a finished or smoke study folder (with runs/*/preds.npz)")
    ap.add_argument("--margin", type=float, default=None,
                    help="equivalence margin in the objective's raw units (default: the study's, else MAE 0.02)")
    a = ap.parse_args(argv)
    if a.margin is not None and not a.margin > 0:
        print(f"error: --margin: must be > 0, got {a.margin}", file=sys.stderr)
        return 2
    try:
        res = load_study(a.dir)
        df, source = plan_rows(res, a.margin)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if df.empty:
        print(f"error: {a.dir}: no headline comparison with per-sample predictions (runs/*/preds.npz)", file=sys.stderr)
        return 2
    from raymsa.report import verdicts as V

    plan = V.plan_of(res.study)
    print(f"{res.study.name}: {len(df)} headline comparison(s); level per comparison {V.spending(plan)[-1]:.4f} / "
          f"{len(df)} (the last planned look of {plan.looks}, Bonferroni over the family); 80 % power to call a "
          "zero difference equivalent")
    f = lambda v, d=3: "never" if not math.isfinite(v) else (f"{v:.{d}f}" if d else str(int(v)))  # noqa: E731
    m = lambda v, d: "unknown" if not math.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
    rows = [[r.model, r.reference, r.scenario, f"±{r.margin:g}", f"{r.n_seeds} × {r.n_samples}", f(r.rho, 2),
             f(r.floor_now), f(r.floor_limit), f(r.seeds_needed, 0), f(r.test_size_needed_at_cap, 0),
             m(r.minutes_per_seed, 2), m(r.minutes_for_seeds_needed, 0)] for r in df.itertuples()]
    print(table_markdown(Table("", ["Model", "Reference", "Scenario", "Margin", "Seeds × samples", "rho",
                                    "Floor now", "Floor, any seeds", "Seeds needed", f"Test size needed at {plan.max} seeds",
                                    "Run-min per seed", "Run-min for seeds needed"], rows)))
    print(f"cost: {source}")
    return 0

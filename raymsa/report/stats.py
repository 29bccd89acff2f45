"""Numbers behind every table and plot, on raw metric values (accuracies in 0..1; no formatting).

Conventions (the field's, see docs/report.md):
- spread over seeds is the population std (ddof=0); NaN values (Corr of a constant predictor) are
  left out and `n` says how many seeds a number rests on;
- a per-seed summary over levels (mean over levels, AUILC, a subset average) is computed per seed
  first, then mean +- std over seeds; a seed lacking a level (or NaN at one) gives no summary;
- effective robustness compares curves averaged over seeds first (MultiBench), raw, not normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raymsa import metrics as M
from raymsa.report.load import KEY, Scenario, StudyResults

COMPLETE = "lav"  # the complete subset {l,a,v}


@dataclass(frozen=True)
class Stat:
    """mean +- population std over the seeds with a finite value; n = how many."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values) -> Stat:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls(math.nan, math.nan, 0)
        return cls(float(v.mean()), float(v.std(ddof=0)), int(v.size))

    @property
    def ok(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: mean, std (ddof=0) and n_seeds per (model, scenario, eval_scenario, level, split,
    metric), in the order of the (sorted) results. n_seeds counts seeds with a non-NaN value."""
    by = [k for k in KEY if k != "seed"]
    g = results.groupby(by, sort=False, dropna=False)["value"]
    out = pd.DataFrame({
        "mean": g.mean(),
        "std": g.std(ddof=0),
        "n_seeds": g.count(),
    }).reset_index()
    return out


class Cube:
    """One split's values indexed by (model, scenario, eval_scenario, metric) for curve lookups."""

    def __init__(self, res: StudyResults, split: str = "test"):
        df = res.results[res.results["split"] == split]
        self.seeds = sorted(set(int(s) for s in df["seed"]))
        self._groups = {k: g for k, g in df.groupby(["model", "scenario", "eval_scenario", "metric"], sort=False)}

    def grid(self, model: str, scenario: str, eval_scenario: str, metric: str,
             levels: tuple[str, ...]) -> pd.DataFrame:
        """Seeds x levels (columns in the given order); NaN where a value is absent."""
        g = self._groups.get((model, scenario, eval_scenario, metric))
        if g is None:
            return pd.DataFrame(columns=list(levels), dtype=float)
        t = g.pivot(index="seed", columns="level", values="value")
        return t.reindex(columns=list(levels)).astype(float).sort_index()

    def has(self, model: str, scenario: str, eval_scenario: str | None = None) -> bool:
        e = scenario if eval_scenario is None else eval_scenario
        return any(k[:3] == (model, scenario, e) for k in self._groups)


def level_stats(grid: pd.DataFrame) -> list[Stat]:
    """One Stat per level (column)."""
    return [Stat.of(grid[c].to_numpy()) for c in grid.columns]


def _complete_rows(grid: pd.DataFrame) -> list[np.ndarray]:
    return [row for row in grid.to_numpy(dtype=float) if np.isfinite(row).all()]


def curve_ok(x: tuple[float, ...] | None) -> bool:
    """AUILC and effective robustness need >= 2 strictly increasing levels."""
    return x is not None and len(x) >= 2 and all(b > a for a, b in zip(x, x[1:]))


def mean_over_levels(grid: pd.DataFrame) -> Stat:
    """Per seed the mean over the grid's levels (LNLN 'overall'), then mean +- std over seeds."""
    return Stat.of([float(M.mean_over_levels(row)) for row in _complete_rows(grid)])


def paired_difference(grid: pd.DataFrame, ref: pd.DataFrame) -> tuple[Stat, int]:
    """Per seed both models share (same seed = same evaluation masks), the model's mean over levels
    minus the reference's; mean +- std of those differences, and on how many seeds it is below 0."""
    common = [sd for sd in grid.index if sd in ref.index]
    diffs = []
    for sd in common:
        a, b = grid.loc[sd].to_numpy(dtype=float), ref.loc[sd].to_numpy(dtype=float)
        if np.isfinite(a).all() and np.isfinite(b).all():
            diffs.append(float(M.mean_over_levels(a)) - float(M.mean_over_levels(b)))
    return Stat.of(diffs), sum(d < 0 for d in diffs)


def auilc(grid: pd.DataFrame, x: tuple[float, ...]) -> Stat:
    """Per seed the trapezoid area under the metric-vs-level curve over the levels as given."""
    if not curve_ok(x):
        return Stat(math.nan, math.nan, 0)
    return Stat.of([float(M.auc_trapezoid(list(x), row)) for row in _complete_rows(grid)])


def seed_mean_curve(grid: pd.DataFrame) -> np.ndarray:
    """Mean over seeds at each level (NaN where no seed has a value)."""
    a = grid.to_numpy(dtype=float)
    if a.size == 0:
        return np.full(grid.shape[1], np.nan)
    with np.errstate(all="ignore"):
        cnt = np.isfinite(a).sum(axis=0)
        tot = np.where(np.isfinite(a), a, 0.0).sum(axis=0)
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def effective_robustness(grid: pd.DataFrame, ref_grid: pd.DataFrame, x: tuple[float, ...],
                         metric: str) -> float:
    """MultiBench effective robustness of the seed-mean curve against the reference's seed-mean
    curve; positive = more robust than the reference (sign flipped for lower-is-better metrics).
    NaN when either curve lacks a level or the metric's direction is unknown."""
    if metric not in M.METRIC_DIRECTION or not curve_ok(x):
        return math.nan
    f, r = seed_mean_curve(grid), seed_mean_curve(ref_grid)
    if not (np.isfinite(f).all() and np.isfinite(r).all()):
        return math.nan
    return float(M.effective_robustness(list(x), f, r, higher_is_better=M.METRIC_DIRECTION[metric]))


def subset_average(grid: pd.DataFrame) -> Stat:
    """Per seed the mean over the incomplete subsets (all but {l,a,v}), then mean +- std over seeds."""
    inc = grid[[c for c in grid.columns if c != COMPLETE]]
    return mean_over_levels(inc)


def robustness_frame(res: StudyResults, cube: Cube, metrics: tuple[str, ...]) -> pd.DataFrame:
    """robustness.csv: per (model, numeric scenario, metric) the mean over levels, AUILC (both mean
    and std over seeds) and effective robustness against the reference model, raw units."""
    st = res.study
    ref = st.reference_model
    rows = []
    for sc in st.scenarios:
        if not sc.numeric:
            continue
        for metric in metrics:
            ref_grid = cube.grid(ref, sc.name, sc.name, metric, sc.levels) if ref else None
            for m in st.all_models:
                g = cube.grid(m, sc.name, sc.name, metric, sc.levels)
                if g.empty:
                    continue
                mol, auc = mean_over_levels(g), auilc(g, sc.x)
                er = effective_robustness(g, ref_grid, sc.x, metric) if ref_grid is not None else math.nan
                rows.append({
                    "model": m, "scenario": sc.name, "kind": sc.kind, "metric": metric,
                    "mean_over_levels": mol.mean, "mean_over_levels_std": mol.std,
                    "auilc": auc.mean, "auilc_std": auc.std, "n_seeds": mol.n,
                    "effective_robustness": er, "reference_model": ref or "",
                    "levels": " ".join(sc.levels),
                })
    return pd.DataFrame(rows, columns=[
        "model", "scenario", "kind", "metric", "mean_over_levels", "mean_over_levels_std", "auilc",
        "auilc_std", "n_seeds", "effective_robustness", "reference_model", "levels"])


def cross_cell(cube: Cube, model: str, trained_for: str, eval_sc: Scenario, metric: str = "MAE") -> Stat:
    """Cross-scenario cell: per seed the mean of `metric` over the eval scenario's levels."""
    return mean_over_levels(cube.grid(model, trained_for, eval_sc.name, metric, eval_sc.levels))

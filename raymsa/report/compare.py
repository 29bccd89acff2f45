"""comparisons.csv: every model against the reference model, paired by seed, with bootstrap intervals.

One row per (model, reference, scenario, summary, metric). Definitions (docs/report.md):

- diff: mean over the seeds both models have of (model's per-seed summary - reference's), from
  eval.csv's values. A seed fixes the training seed and the evaluation masks for every model, so the
  two runs of one seed are a pair.
- ci_low, ci_high: 95 % percentile interval of a paired bootstrap (B = 2000, fixed generator, so a
  rebuild gives the same bytes). Each replicate draws S seeds with replacement and, where every run
  has preds.npz, N test samples with replacement (the same seeds and the same sample indices for
  both models), recomputes the metric of each (seed, level) from the predictions, then the summary
  and the mean paired difference. Without preds.npz only seeds are resampled (n_samples = 0).
- p_improvement: rliable's probability of improvement, P(X > Y) for X a per-seed summary of the
  model and Y one of the reference, over all (unpaired) pairs of seeds, ties counting 1/2, with
  "greater" meaning better by the metric's direction (the Mann-Whitney U statistic / (m n)).
- se: the replicates' std; se_test, df: the SE and degrees of freedom the tests use (verdicts.test_se).
- verdict, p-values, margins, families, floors, seeds_needed: raymsa/report/verdicts.py (decide); a
  row of compare_one alone carries its own unadjusted verdict (better / worse / equivalent /
  inconclusive at 5 %).
- mde_80: the smallest difference the study detects at 80 % power with a two-sided 5 % test,
  (z_0.975 + z_0.80) * SE = 2.80 * SE, SE = the bootstrap replicates' std.

Metrics resampled per test sample are those that are a mean (or ratio) of per-sample terms: MAE and
the accuracies. F1 and Corr are not, and are left out of the table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

from raymsa import metrics as M
from raymsa.report import verdicts as V
from raymsa.report.load import RunPreds, Scenario, StudyResults
from raymsa.report.stats import COMPLETE, Cube, curve_ok

BASE_COLUMNS = ("model", "reference", "scenario", "summary", "metric", "diff", "ci_low", "ci_high", "se",
                "se_test", "df", "p_improvement", "n_seeds", "n_samples", "verdict", "mde_80")
COLUMNS = ("model", "reference", "scenario", "summary", "metric", "family", "diff", "ci_low", "ci_high", "se",
           "se_test", "df", "p_improvement", "n_seeds", "n_samples", "p_value", "p_adjusted", "margin", "p_equivalence",
           "p_equivalence_adjusted", "verdict", "look", "alpha_look", "floor", "floor_samples", "floor_seeds",
           "floor_at_max", "floor_limit", "rho", "mde_80", "seeds_needed")
N_BOOT = 2000
Z_POWER = float(sps.norm.ppf(0.975) + sps.norm.ppf(0.80))  # 2.80
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = V.BETTER, V.WORSE, V.EQUIVALENT, V.INCONCLUSIVE
# per dataset: metrics of the table for numeric scenarios, and for subset scenarios
NUMERIC_METRICS = {"mosi": ("MAE", "Mult_acc_7", "Mult_acc_5", "Non0_acc_2"),
                   "sims": ("MAE", "Mult_acc_5", "Mult_acc_3", "Mult_acc_2")}
NUMERIC_METRICS["mosei"] = NUMERIC_METRICS["mosi"]
SUBSET_METRICS = ("MAE",)


# ---------------------------------------------------------------------------------------------
# per-sample terms: metric = sum(num) / sum(den) over the test samples (as raymsa.metrics)
# ---------------------------------------------------------------------------------------------

def sample_terms(metric: str, p: np.ndarray, y: np.ndarray, dataset: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(num, den), each (..., N), with metric = num.sum(-1) / den.sum(-1); None if the metric is not
    a mean of per-sample terms (F1, Corr)."""
    one = np.ones_like(p)
    if dataset == "sims":
        p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)
        if metric == "MAE":
            return np.abs(p - y), one
        k = {"Mult_acc_2": 2, "Mult_acc_3": 3, "Mult_acc_5": 5}.get(metric)
        if k is None:
            return None
        e = M.SIMS_EDGES[k]
        return (M._sims_bins(p, e) == M._sims_bins(y, e)).astype(float), one
    if metric == "MAE":
        return np.abs(p - y), one
    if metric in ("Mult_acc_7", "Mult_acc_5"):
        b = 3.0 if metric == "Mult_acc_7" else 2.0
        return (np.round(np.clip(p, -b, b)) == np.round(np.clip(y, -b, b))).astype(float), one
    if metric == "Has0_acc_2":
        return ((p >= 0) == (y >= 0)).astype(float), one
    if metric == "Non0_acc_2":
        nz = np.broadcast_to(y != 0, p.shape).astype(float)
        return ((p > 0) == (y > 0)).astype(float) * nz, nz
    return None


# ---------------------------------------------------------------------------------------------
# summaries over levels, on arrays (..., L) -> (...)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    name: str
    levels: tuple[str, ...]  # the levels it reads, in this order
    fn: Callable[[np.ndarray], np.ndarray]
    relative: bool = False  # effective robustness: a per-model drop, differenced, sign set by direction


def summaries(sc: Scenario) -> list[Summary]:
    if sc.numeric:
        out = [Summary("mean over levels", sc.levels, lambda a: a.mean(-1))]
        if curve_ok(sc.x):
            x = np.asarray(sc.x, dtype=float)
            w = np.zeros_like(x)  # trapezoid weights: AUILC = a @ w, the curve as given
            w[:-1] += np.diff(x) / 2
            w[1:] += np.diff(x) / 2
            out.append(Summary("AUILC", sc.levels, lambda a, w=w: a @ w))
            # MultiBench: sum_i (f_i - f_0); the model's minus the reference's is its effective robustness
            out.append(Summary("effective robustness", sc.levels,
                               lambda a: (a[..., 1:] - a[..., :1]).sum(-1), relative=True))
        return out
    inc = tuple(lv for lv in sc.levels if lv != COMPLETE)
    out = [Summary("Avg (incomplete subsets)", inc, lambda a: a.mean(-1))] if inc else []
    return out + [Summary(f"subset {{{','.join(lv)}}}", (lv,), lambda a: a[..., 0]) for lv in sc.levels]


# ---------------------------------------------------------------------------------------------
# one comparison
# ---------------------------------------------------------------------------------------------

def _percentile_ci(boot: np.ndarray) -> tuple[float, float]:
    b = boot[np.isfinite(boot)]
    if b.size < 2:
        return math.nan, math.nan
    lo, hi = np.percentile(b, [2.5, 97.5])
    return float(lo), float(hi)


def p_improvement(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> float:
    """rliable's P(X > Y) over all pairs, ties 1/2, oriented so that 'greater' is better."""
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        return math.nan
    if not higher_is_better:
        x, y = -x, -y
    return float(sps.mannwhitneyu(x, y, alternative="two-sided").statistic / (x.size * y.size))


def _sample_values(runs: list[RunPreds], levels: tuple[str, ...], metric: str, dataset: str,
                   w: np.ndarray | None) -> np.ndarray:
    """Metric per (replicate, seed, level), (B, S, L), from predictions with sample weights w (B, N)
    (counts of a bootstrap draw; None = every sample once, B = 1)."""
    p = np.stack([np.stack([r.preds[lv] for lv in levels]) for r in runs])  # (S, L, N)
    y = runs[0].labels
    num, den = sample_terms(metric, p, np.broadcast_to(y, p.shape), dataset)
    S, L, N = p.shape
    if w is None:
        w = np.ones((1, N))
    with np.errstate(invalid="ignore", divide="ignore"):
        top = w @ num.reshape(S * L, N).T  # (B, S*L)
        # den = 1 everywhere (MAE, accuracies): its sum is the draw's size, no second product needed
        bottom = w.sum(1, keepdims=True) if np.all(den == 1) else w @ den.reshape(S * L, N).T
        v = top / bottom
    return v.reshape(-1, S, L)


@functools.lru_cache(maxsize=8)
def _draws(S: int, N: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The bootstrap's draws: (B, S) resampled seed positions and (B, N) sample counts (None when
    N = 0), from a fixed generator; the same for every row with the same S and N."""
    rng = np.random.default_rng(seed)
    seed_idx = rng.integers(0, S, size=(N_BOOT, S))
    w = None
    if N:  # multinomial counts of N draws with replacement, per replicate (bincount: 10x numpy's multinomial)
        idx = rng.integers(0, N, size=(N_BOOT, N)) + (np.arange(N_BOOT) * N)[:, None]
        w = np.bincount(idx.ravel(), minlength=N_BOOT * N).reshape(N_BOOT, N).astype(float)
    for a in (seed_idx, w):
        if a is not None:
            a.setflags(write=False)  # shared between rows through the cache
    return seed_idx, w


def _per_sample_diff(runs_m: list[RunPreds], runs_r: list[RunPreds], summ: Summary, metric: str, dataset: str,
                     sign: float) -> np.ndarray:
    """(S, N) per-sample paired differences whose mean over samples is each seed's summary difference
    (each metric is sum(num) / sum(den) with den the same for both models, and every summary is
    linear in the per-level values)."""
    y = runs_m[0].labels
    t = []
    for runs in (runs_m, runs_r):
        p = np.stack([np.stack([r.preds[lv] for lv in summ.levels]) for r in runs])  # (S, L, N)
        num, den = sample_terms(metric, p, np.broadcast_to(y, p.shape), dataset)
        t.append(num * (p.shape[-1] / den.sum(-1, keepdims=True)))
    return sign * summ.fn(np.swapaxes(t[0] - t[1], 1, 2))  # (S, N, L) -> (S, N)


def compare_one(res: StudyResults, cube: Cube, model: str, ref: str, sc: Scenario, summ: Summary,
                metric: str, seed: int = 0, ref_scenario: str | None = None) -> dict | None:
    """One row of comparisons.csv before multiplicity control (its verdict is the row's own, at 5 %),
    or None when the two models share no seed with every level. Keys starting with '_' are for
    verdicts.decide: '_comp' the variance components (None without predictions), '_higher'.

    ref_scenario: the reference's runs come from this scenario instead of `sc` (same levels and
    evaluation masks per seed), e.g. one model's `known` arm against its own `unknown` arm."""
    dataset = res.study.dataset
    higher = M.METRIC_DIRECTION[metric]
    rs = ref_scenario or sc.name
    gm = cube.grid(model, sc.name, sc.name, metric, summ.levels)
    gr = cube.grid(ref, rs, rs, metric, summ.levels)
    seeds = [s for s in gm.index if s in gr.index
             and np.isfinite(gm.loc[s].to_numpy(float)).all() and np.isfinite(gr.loc[s].to_numpy(float)).all()]
    if not seeds:
        return None
    a, b = gm.loc[seeds].to_numpy(float), gr.loc[seeds].to_numpy(float)  # (S, L) from eval.csv
    sign = (1.0 if higher else -1.0) if summ.relative else 1.0
    d = sign * (summ.fn(a) - summ.fn(b))  # (S,) paired per-seed differences
    diff = float(d.mean())
    dir_better = True if summ.relative else higher  # effective robustness: positive = loses less

    S = len(seeds)
    runs_m = [res.preds.get((model, sc.name, s)) for s in seeds]
    runs_r = [res.preds.get((ref, rs, s)) for s in seeds]
    usable = (sample_terms(metric, np.zeros(1), np.zeros(1), dataset) is not None
              and all(r is not None and all(lv in r.preds for lv in summ.levels) for r in runs_m + runs_r)
              and all(np.array_equal(r.labels, runs_m[0].labels) for r in runs_m + runs_r))
    n_samples = runs_m[0].labels.shape[0] if usable else 0
    seed_idx, w = _draws(S, n_samples, seed)
    if usable:
        vm = _sample_values(runs_m, summ.levels, metric, dataset, w)  # (B, S, L)
        vr = _sample_values(runs_r, summ.levels, metric, dataset, w)
        dboot = sign * (summ.fn(vm) - summ.fn(vr))  # (B, S)
    else:
        dboot = np.broadcast_to(d, (N_BOOT, S))
    boot = np.take_along_axis(dboot, seed_idx, axis=1).mean(axis=1)  # (B,)
    if S < 2 and not usable:
        boot = np.full(N_BOOT, math.nan)  # one seed and no samples: nothing to resample
    lo, hi = _percentile_ci(boot)
    # a replicate equal to diff can differ from it in the last bits (another summation order)
    tol = 1e-12 * max(1.0, abs(diff))
    if math.isfinite(lo) and diff < lo <= diff + tol:
        lo = diff
    if math.isfinite(hi) and diff - tol <= hi < diff:
        hi = diff
    fb = boot[np.isfinite(boot)]
    se = float(fb.std(ddof=1)) if fb.size > 1 else math.nan
    if math.isfinite(se) and se <= 1e-12 * max(1.0, abs(diff)):
        se = 0.0  # identical predictions: every replicate is the same number
    mde = Z_POWER * se if math.isfinite(se) else math.nan
    margin = V.margin_for(res.study, metric)
    comp = V.components(_per_sample_diff(runs_m, runs_r, summ, metric, dataset, sign)) if usable else None
    se_t, df = V.test_se(se, comp, d)
    v = V.verdict_of(diff, V.p_difference(diff, se_t, df), V.p_equivalence(diff, se_t, margin, df), dir_better)
    # per-seed summaries (for effective robustness the per-seed drops sum_i f_i - f_0, whose better
    # side is the metric's: a smaller MAE increase, a smaller accuracy loss)
    pi = p_improvement(summ.fn(a), summ.fn(b), higher)
    return {"model": model, "reference": ref, "scenario": sc.name, "summary": summ.name, "metric": metric,
            "diff": diff, "ci_low": lo, "ci_high": hi, "se": se, "se_test": se_t, "df": df, "p_improvement": pi, "n_seeds": S,
            "n_samples": n_samples, "verdict": v, "mde_80": mde, "_comp": comp, "_higher": dir_better}


def _frame(res: StudyResults, rows: list[dict]) -> tuple[pd.DataFrame, list]:
    comps = [r.pop("_comp") for r in rows]
    higher = [r.pop("_higher") for r in rows]
    f = V.decide(pd.DataFrame(rows, columns=list(BASE_COLUMNS)), res.study, comps, higher)
    return f[list(COLUMNS)], comps


def comparisons_frame(res: StudyResults, cube: Cube) -> pd.DataFrame:
    """comparisons.csv: every model of the study against the reference model, and each tuned model
    against its default arm (empty without either), with the verdicts of verdicts.decide."""
    return comparisons_with_components(res, cube)[0]


def comparisons_with_components(res: StudyResults, cube: Cube) -> tuple[pd.DataFrame, list]:
    st = res.study
    rows = []
    for sc in st.scenarios:
        metrics = NUMERIC_METRICS[st.dataset] if sc.numeric else SUBSET_METRICS
        for m, ref in _pairs(st):
            for summ in summaries(sc):
                for metric in metrics:
                    r = compare_one(res, cube, m, ref, sc, summ, metric)
                    if r is not None:
                        rows.append(r)
    return _frame(res, rows)


def _pairs(st) -> list[tuple[str, str]]:
    ref = st.reference_model
    out = [(m, ref) for m in st.all_models if ref and m != ref]
    return out + [p for p in V.headline_pairs(st) if p not in out]


def headline_frame(res: StudyResults, cube: Cube) -> tuple[pd.DataFrame, list]:
    """Only the headline rows (what the runner's rounds need; the same numbers as comparisons.csv's)."""
    st = res.study
    metric = V.objective_metric(st)
    rows = []
    for sc in st.scenarios:
        summ = next((s for s in summaries(sc) if s.name == V.headline_summary(sc.numeric)), None)
        if summ is None:
            continue
        for m, ref in V.headline_pairs(st):
            r = compare_one(res, cube, m, ref, sc, summ, metric)
            if r is not None:
                rows.append(r)
    return _frame(res, rows)


def variance_sources(res: StudyResults) -> str:
    """Which sources of variance the intervals cover, in words, for the report."""
    samples = bool(res.preds)
    k = res.study.search_repeats
    parts = ["seeds (each seed sets the weights' initialisation, the data order and the training and "
             "evaluation masks of both models, so seeds and masks are one source)"]
    parts.append("test samples (resampled from preds.npz)" if samples else
                 "not test samples (no preds.npz: studies before per-sample predictions; n_samples = 0)")
    if k > 1:
        parts.append(f"the search ({k} independent searches per model and scenario, repeat k retrained with "
                     f"the seeds j where j mod {k} = k, so resampling seeds resamples searches too)")
    else:
        parts.append("not the search (one search per model and scenario: every seed retrains the same "
                     "configuration; set search.repeats to cover it)")
    return "The intervals cover " + "; ".join(parts) + "."

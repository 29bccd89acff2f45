"""The Bayes-optimal ceiling in the report: DIR/ceiling.csv (written by the study on the embedded
synthetic data, see raymsa.data.ceiling) read, checked, and set beside every model.

A study on real data has no ceiling.csv; then `load_ceiling` returns None and the report has no
ceiling rows, curves or section. Each ceiling row is paired with the models' runs of the same seed
(the same test masks), so per-seed gaps are paired differences.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from raymsa import metrics as M
from raymsa.report.load import ReportError, Scenario, StudyResults, level_display
from raymsa.report.render import Table
from raymsa.report.stats import Cube, Stat, level_stats, mean_over_levels

CEILING_FILE = "ceiling.csv"
LABEL = "Bayes ceiling"
COLUMNS = ("scenario", "level", "seed", "metric", "value")
GAP_METRICS = {"mosi": ("MAE", "Mult_acc_7", "Corr"), "mosei": ("MAE", "Mult_acc_7", "Corr"),
               "sims": ("MAE", "Mult_acc_5", "Corr")}


class Ceiling:
    """ceiling.csv as seeds x levels grids per (scenario, metric)."""

    def __init__(self, frame: pd.DataFrame, source: Path):
        self.frame, self.source = frame, source
        self._groups = {k: g for k, g in frame.groupby(["scenario", "metric"], sort=False)}

    def has(self, sc: Scenario) -> bool:
        return any(k[0] == sc.name for k in self._groups)

    def grid(self, sc: Scenario, metric: str, levels: tuple[str, ...] | None = None) -> pd.DataFrame:
        levels = sc.levels if levels is None else levels
        g = self._groups.get((sc.name, metric))
        if g is None:
            return pd.DataFrame(columns=list(levels), dtype=float)
        t = g.pivot(index="seed", columns="level", values="value")
        return t.reindex(columns=list(levels)).astype(float).sort_index()

    # ---- hooks for tables.py -------------------------------------------------------------------
    def level_row(self, sc: Scenario, metric: str, n_expected: int) -> list[str] | None:
        """The per-level table's ceiling row (level cells, then the mean over levels)."""
        from raymsa.report.tables import fmt

        if not self.has(sc):
            return None
        g = self.grid(sc, metric)
        return [LABEL, *[fmt(s, metric, n_expected) for s in level_stats(g)], fmt(mean_over_levels(g), metric, n_expected)]

    def subset_row(self, sc: Scenario, metric: str, n_expected: int, incomplete: list[str],
                   complete: list[str]) -> list[str] | None:
        """The subset table's ceiling row: incomplete subsets, their Avg, the complete set."""
        from raymsa.report.stats import subset_average
        from raymsa.report.tables import fmt

        if not self.has(sc):
            return None
        g = self.grid(sc, metric, tuple(incomplete + complete))
        st = dict(zip(g.columns, level_stats(g)))
        return [LABEL, *[fmt(st[lv], metric, n_expected) for lv in incomplete],
                fmt(subset_average(g), metric, n_expected), *[fmt(st[lv], metric, n_expected) for lv in complete]]


def load_ceiling(res: StudyResults) -> Ceiling | None:
    """DIR/ceiling.csv checked against the study (None when there is none: real data)."""
    path = res.dir / CEILING_FILE
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path, dtype={"scenario": str, "level": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in ("seed", "value"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = df.index[num.isna() & df[col].notna()]
        if len(bad):
            raise ReportError(f"{path}: row {int(bad[0]) + 2}: column {col!r} is not a number ({df[col][bad[0]]!r})")
        df[col] = num
    df["seed"] = df["seed"].astype(int)
    known = {sc.name: sc for sc in res.study.scenarios}
    df = df[df["scenario"].isin(known)].copy()  # a scenario the study no longer has: ignored
    df["level"] = [known[s].canonical(lv) for s, lv in zip(df["scenario"], df["level"])]
    return Ceiling(df[list(COLUMNS)], path)


# ---------------------------------------------------------------------------------------------
# Gaps: how far each model is from the best possible, and how much of the reference's gap it closes
# ---------------------------------------------------------------------------------------------

def _per_seed_means(grid: pd.DataFrame) -> dict[int, float]:
    out = {}
    for sd, row in grid.iterrows():
        v = row.to_numpy(dtype=float)
        if v.size and np.isfinite(v).all():
            out[int(sd)] = float(v.mean())
    return out


def gap_frame(res: StudyResults, cube: Cube, ceiling: Ceiling) -> pd.DataFrame:
    """One row per (scenario, metric, model): mean over levels of model and ceiling (seed means),
    the paired per-seed gap (positive = short of the ceiling) and the share of the reference's gap
    the model closes, (ref - model) / (ref - ceiling), on seed-mean values."""
    st = res.study
    ref = st.reference_model
    rows = []
    for sc in st.scenarios:
        if not ceiling.has(sc):
            continue
        for metric in GAP_METRICS[st.dataset]:
            sign = 1.0 if M.METRIC_DIRECTION[metric] else -1.0  # gap > 0: worse than the ceiling
            c = _per_seed_means(ceiling.grid(sc, metric))
            r = _per_seed_means(cube.grid(ref, sc.name, sc.name, metric, sc.levels)) if ref else {}
            for m in st.all_models:
                if not cube.has(m, sc.name):
                    continue
                v = _per_seed_means(cube.grid(m, sc.name, sc.name, metric, sc.levels))
                seeds = sorted(set(v) & set(c))
                gaps = Stat.of([sign * (c[s] - v[s]) for s in seeds])
                model_mean = float(np.mean([v[s] for s in seeds])) if seeds else math.nan
                ceil_mean = float(np.mean([c[s] for s in seeds])) if seeds else math.nan
                share = math.nan
                rs = sorted(set(seeds) & set(r))
                if rs and m != ref:
                    ref_m = np.mean([r[s] for s in rs])
                    mod_m = np.mean([v[s] for s in rs])
                    ceil_m = np.mean([c[s] for s in rs])
                    if abs(ref_m - ceil_m) > 1e-12:
                        share = float((ref_m - mod_m) / (ref_m - ceil_m))
                rows.append({"scenario": sc.name, "metric": metric, "model": m, "model_mean": model_mean,
                             "ceiling_mean": ceil_mean, "gap": gaps.mean, "gap_std": gaps.std,
                             "n_seeds": gaps.n, "share_of_reference_gap_closed": share})
    return pd.DataFrame(rows, columns=["scenario", "metric", "model", "model_mean", "ceiling_mean", "gap",
                                       "gap_std", "n_seeds", "share_of_reference_gap_closed"])


def gap_tables(res: StudyResults, gaps: pd.DataFrame) -> list[Table]:
    from raymsa.report.tables import fmt, fmt_value, n_expected, unit_name

    ne = n_expected(res)
    ref = res.study.reference_model
    out = []
    for sc in res.study.scenarios:
        g = gaps[gaps["scenario"] == sc.name]
        if g.empty:
            continue
        rows = []
        for _, x in g.iterrows():
            metric = x["metric"]
            share = x["share_of_reference_gap_closed"]
            share_txt = "reference" if x["model"] == ref else (f"{100 * share:.0f} %" if math.isfinite(share) else "—")
            rows.append([unit_name(metric), x["model"], fmt_value(x["model_mean"], metric),
                         fmt_value(x["ceiling_mean"], metric),
                         fmt(Stat(x["gap"], x["gap_std"], int(x["n_seeds"])), metric, ne), share_txt])
        span = f"{level_display(sc.levels[0])}…{level_display(sc.levels[-1])}" if sc.numeric else "all subsets"
        out.append(Table(
            title=f"{sc.name}: distance to the Bayes ceiling, mean over levels ({span}), test",
            columns=["Metric", "Model", "Model", LABEL, "Gap to ceiling", f"Share of {ref}'s gap closed" if ref
                     else "Share of the reference's gap closed"],
            rows=rows,
            note="Gap: per seed, the model's mean over levels short of the ceiling's under the same masks "
                 "(positive = worse than the best possible), mean ± std over seeds. Share: (ref − model) / "
                 "(ref − ceiling) on seed means; 100 % = at the ceiling, 0 % = no better than the reference."))
    return out

"""Report tables in the field's formats, and the auto-written summary of measured facts.

Cell format (the field's): accuracies and F1 x100 with 2 decimals, MAE and Corr with 3 decimals,
"mean ± std" over seeds (population std). A cell resting on fewer seeds than the study ran says so
with "(n=k)"; a cell without data is "—".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from raymsa import metrics as M
from raymsa.report.load import Scenario, StudyResults, level_display, subset_display
from raymsa.report.render import Table
from raymsa.report.stats import (COMPLETE, Cube, Stat, cross_cell, level_stats, mean_over_levels,
                                 subset_average)

# The four curves of every robustness figure and the per-level tables.
HEADLINE = {
    "mosi": ("MAE", "Mult_acc_7", "Mult_acc_5", "Non0_F1_score"),
    "mosei": ("MAE", "Mult_acc_7", "Mult_acc_5", "Non0_F1_score"),
    "sims": ("MAE", "Mult_acc_5", "Mult_acc_3", "F1_score"),
}
# LNLN's headline columns: (header, metrics shown as "a/b" in one cell).
OVERALL = {
    "mosi": (("Acc-7", ("Mult_acc_7",)), ("Acc-5", ("Mult_acc_5",)),
             ("Acc-2 (Non0/Has0)", ("Non0_acc_2", "Has0_acc_2")),
             ("F1 (Non0/Has0)", ("Non0_F1_score", "Has0_F1_score")), ("MAE", ("MAE",)), ("Corr", ("Corr",))),
    "sims": (("Acc-5", ("Mult_acc_5",)), ("Acc-3", ("Mult_acc_3",)), ("Acc-2", ("Mult_acc_2",)),
             ("F1", ("F1_score",)), ("MAE", ("MAE",)), ("Corr", ("Corr",))),
}
OVERALL["mosei"] = OVERALL["mosi"]
# Subset tables (CorrKD/HRLF): weighted F1, then MAE.
SUBSET_METRICS = {"mosi": ("Non0_F1_score", "MAE"), "mosei": ("Non0_F1_score", "MAE"), "sims": ("F1_score", "MAE")}

DASH = "—"


def name(metric: str) -> str:
    """'Non0_F1_score' -> 'F1 (Non0)' (raymsa.metrics' paper names); unknown keys as they are."""
    try:
        return M.metric_label(metric)
    except KeyError:
        return metric


def is_pct(metric: str) -> bool:
    """Accuracies and F1 are shown x100; MAE and Corr as they are."""
    return metric not in ("MAE", "Corr")


def unit_name(metric: str) -> str:
    return f"{name(metric)} (%)" if is_pct(metric) else name(metric)


def _scale(metric: str) -> tuple[float, int]:
    return (100.0, 2) if is_pct(metric) else (1.0, 3)


def fmt_value(v: float, metric: str, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return DASH
    k, d = _scale(metric)
    return f"{v * k:+.{d}f}" if signed else f"{v * k:.{d}f}"


def fmt(stat: Stat, metric: str, n_expected: int) -> str:
    """'72.55 ± 0.41' (x100 for accuracies/F1), '1.046 ± 0.012'; '(n=k)' if fewer seeds."""
    if not stat.ok:
        return DASH
    s = f"{fmt_value(stat.mean, metric)} ± {fmt_value(stat.std, metric)}"
    return s + (f" (n={stat.n})" if stat.n < n_expected else "")


def fmt_pair(stats: list[Stat], metrics: tuple[str, ...], n_expected: int) -> str:
    """LNLN's paired cell: '72.55/70.94 ± 0.41/0.38'."""
    if len(stats) == 1:
        return fmt(stats[0], metrics[0], n_expected)
    if not any(s.ok for s in stats):
        return DASH
    means = "/".join(fmt_value(s.mean, m) for s, m in zip(stats, metrics))
    stds = "/".join(fmt_value(s.std, m) for s, m in zip(stats, metrics))
    n = min(s.n for s in stats)
    return f"{means} ± {stds}" + (f" (n={n})" if n < n_expected else "")


def scenario_label(sc: Scenario) -> str:
    """'intra', or 'hard (intra)' when the name differs from the kind; the known arm says so."""
    known = getattr(sc, "knowledge", "unknown") == "known"
    if sc.name == sc.kind and not known:
        return sc.name
    return f"{sc.name} ({sc.kind}{', masks known' if known else ''})"


def n_expected(res: StudyResults) -> int:
    return len(res.study.seeds) or res.results["seed"].nunique()


def _models_with(res: StudyResults, cube: Cube, sc: Scenario) -> list[str]:
    return [m for m in res.study.all_models if cube.has(m, sc.name)]


# ---------------------------------------------------------------------------------------------
# Scenario tables
# ---------------------------------------------------------------------------------------------

def level_tables(res: StudyResults, cube: Cube, sc: Scenario, ceiling=None) -> list[Table]:
    """LNLN-style: rows = model, columns = each level + Mean (over levels), one table per headline metric;
    with a ceiling (raymsa.report.ceiling.Ceiling), a last row with the Bayes-optimal values."""
    ne = n_expected(res)
    out = []
    for metric in HEADLINE[res.study.dataset]:
        rows = []
        for m in _models_with(res, cube, sc):
            g = cube.grid(m, sc.name, sc.name, metric, sc.levels)
            cells = [fmt(s, metric, ne) for s in level_stats(g)]
            rows.append([m, *cells, fmt(mean_over_levels(g), metric, ne)])
        if ceiling is not None and (row := ceiling.level_row(sc, metric, ne)):
            rows.append(row)
        out.append(Table(
            title=f"{sc.name}: test {unit_name(metric)} per level, mean ± std over seeds",
            columns=["Model", *[level_display(lv) for lv in sc.levels], "Mean"], rows=rows))
    return out


def overall_table(res: StudyResults, cube: Cube, sc: Scenario) -> Table:
    """LNLN's headline format: each metric's mean over levels per seed, then mean ± std over seeds."""
    ne = n_expected(res)
    cols = OVERALL[res.study.dataset]
    rows = []
    for m in _models_with(res, cube, sc):
        cells = []
        for _, metrics in cols:
            stats = [mean_over_levels(cube.grid(m, sc.name, sc.name, k, sc.levels)) for k in metrics]
            cells.append(fmt_pair(stats, metrics, ne))
        rows.append([m, *cells])
    if len(sc.levels) == 1:
        over = f"at the single level {level_display(sc.levels[0])}"
    else:
        over = (f"mean over the {len(sc.levels)} levels "
                f"{level_display(sc.levels[0])}…{level_display(sc.levels[-1])}")
    paired = any(len(ms) > 1 for _, ms in cols)
    return Table(title=f"{sc.name}: overall = {over}, test",
                 columns=["Model", *[h for h, _ in cols]], rows=rows,
                 note="Accuracies and F1 ×100." + (" Paired cells are Non0/Has0." if paired else ""))


def subset_tables(res: StudyResults, cube: Cube, sc: Scenario, ceiling=None) -> list[Table]:
    """CorrKD/HRLF-style: the six incomplete subsets, their Avg, then the complete {l,a,v}."""
    ne = n_expected(res)
    incomplete = [lv for lv in sc.levels if lv != COMPLETE]
    complete = [lv for lv in sc.levels if lv == COMPLETE]
    out = []
    for metric in SUBSET_METRICS[res.study.dataset]:
        rows = []
        for m in _models_with(res, cube, sc):
            g = cube.grid(m, sc.name, sc.name, metric, tuple(incomplete + complete))
            st = dict(zip(g.columns, level_stats(g)))
            rows.append([m, *[fmt(st[lv], metric, ne) for lv in incomplete],
                         fmt(subset_average(g), metric, ne), *[fmt(st[lv], metric, ne) for lv in complete]])
        if ceiling is not None and (row := ceiling.subset_row(sc, metric, ne, incomplete, complete)):
            rows.append(row)
        out.append(Table(
            title=f"{sc.name}: test {unit_name(metric)} per available-modality subset",
            columns=["Model", *[subset_display(lv) for lv in incomplete], "Avg",
                     *[subset_display(lv) for lv in complete]],
            rows=rows, note="Avg = mean of the incomplete subsets (per seed, then over seeds)."))
    return out


# ---------------------------------------------------------------------------------------------
# Robustness summaries
# ---------------------------------------------------------------------------------------------

def robustness_tables(res: StudyResults, rob: pd.DataFrame) -> list[Table]:
    ne = n_expected(res)
    ref = res.study.reference_model
    out = []
    for sc in res.study.scenarios:
        r = rob[rob["scenario"] == sc.name]
        if r.empty:
            continue
        rows = []
        for metric in HEADLINE[res.study.dataset]:
            for _, x in r[r["metric"] == metric].iterrows():
                mol = Stat(x["mean_over_levels"], x["mean_over_levels_std"], int(x["n_seeds"]))
                auc = Stat(x["auilc"], x["auilc_std"], int(x["n_seeds"]))
                er = fmt_value(x["effective_robustness"], metric, signed=True)
                if x["model"] == ref:
                    er = "0 (reference)"
                rows.append([unit_name(metric), x["model"], fmt(mol, metric, ne), fmt(auc, metric, ne), er])
        x_from, x_to = level_display(sc.levels[0]), level_display(sc.levels[-1])
        out.append(Table(
            title=f"{sc.name}: robustness summaries over levels {x_from}…{x_to}, test",
            columns=["Metric", "Model", "Mean over levels", f"AUILC ({x_from}…{x_to})",
                     f"Eff. robustness vs {ref}" if ref else "Eff. robustness (no reference)"],
            rows=rows,
            note="AUILC: trapezoid area over the levels as given (its width is the grid's span, "
                 "not 0…1). Effective robustness: seed-mean curves, raw sum, sign flipped for MAE; "
                 "positive = more robust than the reference."))
    return out


# ---------------------------------------------------------------------------------------------
# Search results
# ---------------------------------------------------------------------------------------------

def _param_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def best_config_tables(res: StudyResults) -> list[Table]:
    """Per model: rows = scenario, columns = config, objective, trials and every searched parameter."""
    out = []
    for m in res.study.all_models:
        bests = [res.best[(m, sc.name)] for sc in res.study.scenarios if (m, sc.name) in res.best]
        if not bests:
            continue
        keys = sorted({k for b in bests for k in b.params})
        rows = []
        # search.warm_start: which scenarios' best configs a search ran first (marked in trials.csv too)
        warm = any(b.warm_from for b in bests)
        for b in bests:
            obj = f"{fmt_value(b.objective_value, b.objective_metric or 'MAE')}"
            rows.append([b.scenario, b.config_id, obj, "" if b.n_trials is None else str(b.n_trials),
                         *([", ".join(b.warm_from)] if warm else []),
                         *[_param_value(b.params[k]) if k in b.params else "" for k in keys]])
        ob = bests[0]
        objective = f"{ob.objective_metric} ({ob.objective_mode})".strip()
        summary = res.study.objective.get("summary", "")
        note = f"Objective: {summary}." if summary else ""
        if warm:
            note += (" Warm start from: the scenarios whose best configs the search ran first (column "
                     "`warm_start` of trials.csv marks those trials).")
        out.append(Table(
            title=f"{m}: best configuration per scenario",
            columns=["Scenario", "Config", f"Objective {objective}", "Trials", *(["Warm start from"] if warm else []),
                     *keys], rows=rows, note=note.strip()))
    return out


def importance_tables(res: StudyResults) -> list[Table]:
    """Per model: rows = parameter, columns = scenario (Optuna importances; blank where not computed)."""
    out = []
    for m in res.study.all_models:
        bests = [res.best[(m, sc.name)] for sc in res.study.scenarios
                 if (m, sc.name) in res.best and res.best[(m, sc.name)].importances]
        if not bests:
            continue
        keys = sorted({k for b in bests for k in b.importances},
                      key=lambda k: -max(b.importances.get(k, 0.0) for b in bests))
        rows = [[k, *[f"{b.importances[k]:.3f}" if k in b.importances else "" for b in bests]] for k in keys]
        # which search-space group matters (loss vs regularisation): the importances summed per group
        groups = sorted({g for b in bests for g in b.group_importances})
        if len(groups) > 1:
            rows = [[f"group: {g}", *[f"{b.group_importances[g]:.3f}" if g in b.group_importances else ""
                                      for b in bests]] for g in groups] + rows
        out.append(Table(title=f"{m}: Optuna parameter importances", columns=["Parameter", *[b.scenario for b in bests]],
                         rows=rows))
    return out


# ---------------------------------------------------------------------------------------------
# Cross-scenario matrix
# ---------------------------------------------------------------------------------------------

def cross_matrix(res: StudyResults, cube: Cube, model: str) -> tuple[list[str], list[str], list[list[Stat]]]:
    """(trained-for scenario names, eval scenario names, Stat cells) for one model; rows without data
    are dropped."""
    scs = res.study.scenarios
    rows, cells = [], []
    for tr in scs:
        r = [cross_cell(cube, model, tr.name, ev) for ev in scs]
        if any(c.ok for c in r):
            rows.append(tr.name)
            cells.append(r)
    return rows, [s.name for s in scs], cells


def cross_tables(res: StudyResults, cube: Cube) -> list[Table]:
    ne = n_expected(res)
    out = []
    for m in res.study.all_models:
        rows, cols, cells = cross_matrix(res, cube, m)
        if not rows:
            continue
        body = [[r, *[fmt(c, "MAE", ne) for c in cr]] for r, cr in zip(rows, cells)]
        hl = {(i, 1 + cols.index(r)) for i, r in enumerate(rows) if r in cols}
        out.append(Table(title=f"{m}: test MAE, trained for (rows) × evaluated under (columns)",
                         columns=["Trained for \\ eval", *cols], rows=body, highlight=hl,
                         note="Cell: per seed the mean MAE over the eval scenario's levels, then mean ± std "
                              "over seeds. Diagonal (bold) = the scenario the config was searched for."))
    return out


# ---------------------------------------------------------------------------------------------
# Summary of measured facts
# ---------------------------------------------------------------------------------------------

def _interval(r, metric: str) -> str:
    return (f"{fmt_value(r['diff'], metric, signed=True)} "
            f"[95 % CI {fmt_value(r['ci_low'], metric, signed=True)}, {fmt_value(r['ci_high'], metric, signed=True)}]")


def fmt_p(v: float) -> str:
    if v is None or not math.isfinite(v):
        return DASH
    return f"{v:.3f}" if v >= 0.001 else "<0.001"


def comparison_sentence(r, why: str = "") -> str:
    """One Summary sentence from a comparisons.csv row."""
    metric = r["metric"]
    what = ("effective robustness" if r["summary"] == "effective robustness"
            else f"{r['summary']} difference")
    over = f"{int(r['n_seeds'])} seed(s)" + (f" × {int(r['n_samples'])} test samples" if r["n_samples"] else "")
    adj = "Holm" if r["family"] == "headline" else "BH"
    text = (f"{r['scenario']}, test {name(metric)}, {r['model']} vs {r['reference']}: {what} "
            f"{_interval(r, metric)} over {over}; p {fmt_p(r['p_value'])} ({adj}-adjusted {fmt_p(r['p_adjusted'])}), "
            f"equivalence within ±{fmt_value(r['margin'], metric)} p {fmt_p(r['p_equivalence'])} "
            f"(adjusted {fmt_p(r['p_equivalence_adjusted'])}): {r['verdict']}")
    if math.isfinite(r["floor"]):
        text += f"; smallest margin supportable ±{fmt_value(r['floor'], metric)}"
    if why:
        text += f"; {why}"
    return text + "."


def _change(x: float, metric: str) -> str:
    """A signed improvement in plain words: 'a gain of 0.012' / 'a loss of 0.030'."""
    return f"a {'gain' if x > 0 else 'loss'} of {fmt_value(abs(x), metric)}"


def search_bought_sentences(res: StudyResults, comp: pd.DataFrame) -> list[str]:
    """Issue 21: per scenario, one sentence on what the search bought, read from the headline row
    tuned-minus-default (the same interval, adjusted p and verdict as the table), told as a gain or
    a loss in the objective's own direction."""
    arms = res.study.default_arms
    h = headline_rows(res, comp)
    out = []
    for sc in res.study.scenarios:
        for tuned, default in arms.items():
            rows = h[(h["model"] == tuned) & (h["reference"] == default) & (h["scenario"] == sc.name)]
            if rows.empty:
                continue
            r = rows.iloc[0]
            m = r["metric"]
            up = M.METRIC_DIRECTION.get(m, True)
            gain, lo, hi = ((r["diff"], r["ci_low"], r["ci_high"]) if up
                            else (-r["diff"], -r["ci_high"], -r["ci_low"]))
            t = res.trials.get((tuned, sc.name))
            searched = ""
            if t is not None and len(t):
                warm = int(t["warm_start"].notna().sum()) if "warm_start" in t else 0
                searched = f"best of {len(t)} trials"
                if warm:
                    searched += ", one a warm start" if warm == 1 else f", {warm} of them warm starts"
                ok = t["objective"].dropna() if "objective" in t else pd.Series(dtype=float)
                if warm and len(ok):
                    best_i = ok.idxmax() if res.study.objective.get("mode") == "max" else ok.idxmin()
                    src = t.loc[best_i, "warm_start"]
                    if isinstance(src, str) and src:
                        searched += f"; the winner is the warm start from {src}"
            verdict = r["verdict"]
            if verdict == "better":
                what = f"it bought {_change(gain, m)} (Holm p {fmt_p(r['p_adjusted'])})"
            elif verdict == "worse":
                what = (f"it cost {fmt_value(abs(gain), m)}: the tuned config is worse than the default "
                        f"(Holm p {fmt_p(r['p_adjusted'])})")
            elif verdict == "equivalent":
                what = (f"it bought nothing beyond ±{fmt_value(r['margin'], m)}: tuned and default are equivalent "
                        f"(TOST p, Holm {fmt_p(r['p_equivalence_adjusted'])})")
            else:
                what = f"not resolved: the data allow anything from {_change(lo, m)} to {_change(hi, m)}"
                if lo > 0 or hi < 0:
                    what += " (the unadjusted interval excludes 0; the Holm-adjusted test does not settle it)"
            out.append(f"What the search bought under {sc.name}: {tuned}"
                       + (f" ({searched})" if searched else "")
                       + f" against {default} (its default config, same seeds), test {name(m)}: "
                       f"{_interval(r, m)} (tuned − default{'' if up else ', lower is better'}) over "
                       f"{int(r['n_seeds'])} seed(s); {what}.")
    return out


def headline_rows(res: StudyResults, comp: pd.DataFrame) -> pd.DataFrame:
    """The headline family's rows (verdicts.py)."""
    if comp.empty:
        return comp
    return comp[comp["family"] == "headline"]


def procedure_sentence(res: StudyResults, comp: pd.DataFrame) -> str:
    from raymsa.report.verdicts import objective_metric, plan_of

    st = res.study
    h = headline_rows(res, comp)
    plan = plan_of(st)
    looks = plan.looks
    seq = (f"; seeds were added in rounds (looks at {', '.join(map(str, looks))} seeds), so each look spends "
           "part of the 5 % by Lan-DeMets alpha spending with a Pocock-type function, the p-values weighted "
           "by the look's share (docs/report.md)") if len(looks) > 1 else ""
    counts = h["verdict"].value_counts()
    return (f"Headline family ({len(h)} comparisons: each model against the reference, and each tuned model "
            f"against its default arm, per scenario, on the search objective {name(objective_metric(st))}, mean "
            f"over levels (subset scenarios: Avg of the incomplete subsets)): Holm-adjusted p-values, family-wise "
            f"error 5 %; equivalence = two one-sided tests against ±margin at the same adjusted level{seq}. "
            "Verdicts: " + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in
                                     ("better", "worse", "equivalent", "inconclusive")) + ".")


def resolution_sentence(res: StudyResults, comp: pd.DataFrame) -> str | None:
    """What size of difference the study can resolve, from the headline rows' floors."""
    from raymsa.report.verdicts import plan_of

    h = headline_rows(res, comp)
    h = h[np.isfinite(h["floor_samples"].to_numpy(float))] if not h.empty else h
    if h.empty:
        return None
    metric = h["metric"].iloc[0]
    f = lambda col: fmt_value(float(np.median(h[col].to_numpy(float))), metric)  # noqa: E731
    cap = plan_of(res.study).max
    return (f"{res.study.dataset.upper()}, {int(h['n_samples'].iloc[0])} test samples: at the seeds run the headline "
            f"comparisons can call two models equivalent only within ±{f('floor')} {name(metric)} (median over the "
            f"{len(h)} headline rows; test-sample part ±{f('floor_samples')}, seed part ±{f('floor_seeds')}); at "
            f"the seed cap ({cap}) ±{f('floor_at_max')}, and no number of seeds brings it below ±{f('floor_limit')} "
            f"(the part every seed shares: the test set's own bound).")


def summary_facts(res: StudyResults, cube: Cube, rob: pd.DataFrame, comp: pd.DataFrame | None = None,
                  reasons: dict | None = None) -> list[str]:
    st = res.study
    facts = []
    reasons = reasons or {}
    if comp is not None and not comp.empty:
        h = headline_rows(res, comp)
        if not h.empty:
            facts.append(procedure_sentence(res, comp))
            facts += [comparison_sentence(r, reasons.get((r["model"], r["reference"], r["scenario"]), ""))
                      for _, r in h.iterrows()]
            if (rs := resolution_sentence(res, comp)):
                facts.append(rs)
            facts += search_bought_sentences(res, comp)
        ex = comp[comp["family"] == "exploratory"]
        if not ex.empty:
            counts = ex["verdict"].value_counts()
            facts.append(f"The other {len(ex)} rows of comparisons.csv are exploratory (every scenario, summary "
                         "and resampled metric; Benjamini-Hochberg q-values, false discovery rate 5 %): "
                         + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in
                                     ("better", "worse", "equivalent", "inconclusive")) + ".")
    elif not st.reference_model:
        facts.append("No reference model: no comparisons.")
    n_runs = len(st.all_models) * len(st.scenarios) * len(st.seeds)
    absent = sum(1 for x in res.missing if x.startswith("run ") and ": no results" in x)
    if absent:
        facts.append(f"{absent} of {n_runs} expected runs have no results; every number above uses the runs present.")
    if st.smoke:
        facts.append("This is a smoke study: tiny data and budgets, the numbers test the pipeline only.")
    return facts


def _cell_ci(r, m: str) -> str:
    return f"[{fmt_value(r['ci_low'], m, signed=True)}, {fmt_value(r['ci_high'], m, signed=True)}]"


def _num(v: float) -> str:
    return "" if not math.isfinite(v) else str(int(v))


def headline_table(res: StudyResults, comp: pd.DataFrame, reasons: dict) -> Table | None:
    h = headline_rows(res, comp)
    if h.empty:
        return None
    rows = []
    for _, r in h.iterrows():
        m = r["metric"]
        rows.append([r["model"], r["reference"], r["scenario"], fmt_value(r["diff"], m, signed=True), _cell_ci(r, m),
                     fmt_p(r["p_adjusted"]), fmt_p(r["p_equivalence_adjusted"]), f"±{fmt_value(r['margin'], m)}",
                     r["verdict"], f"{int(r['n_seeds'])} (look {int(r['look'])})",
                     f"±{fmt_value(r['floor'], m)} ({fmt_value(r['floor_samples'], m)} / {fmt_value(r['floor_seeds'], m)})",
                     f"±{fmt_value(r['floor_at_max'], m)}", f"±{fmt_value(r['floor_limit'], m)}",
                     _num(r["seeds_needed"]), reasons.get((r["model"], r["reference"], r["scenario"]), "")])
    return Table(
        title=f"Headline family: test {unit_name(h['metric'].iloc[0])}, Holm-adjusted (family-wise 5 %)",
        columns=["Model", "Reference", "Scenario", "Diff", "95 % CI", "p (Holm)", "TOST p (Holm)", "Margin",
                 "Verdict", "Seeds", "Floor (samples / seeds)", "Floor at cap", "Floor, any seeds", "Seeds needed",
                 "Why it stopped"], rows=rows,
        note="Floor = the smallest equivalence margin the row could support at its adjusted level (z × SE), split "
             "in quadrature into its test-sample and seed parts; at cap: projected to the seed plan's maximum; any "
             "seeds: the part of the test-sample noise every seed shares. Seeds needed: seeds at which the observed "
             "difference would resolve with 80 % power (empty: none would). Accuracies ×100.")


def comparison_tables(res: StudyResults, comp: pd.DataFrame) -> list[Table]:
    """Per scenario: every comparisons.csv row, formatted like the metric."""
    out = []
    for sc in res.study.scenarios:
        c = comp[comp["scenario"] == sc.name]
        if c.empty:
            continue
        rows = []
        for _, r in c.iterrows():
            m = r["metric"]
            rows.append([r["model"], r["reference"], r["summary"], unit_name(m), r["family"],
                         fmt_value(r["diff"], m, signed=True), _cell_ci(r, m),
                         DASH if not math.isfinite(r["p_improvement"]) else f"{r['p_improvement']:.2f}",
                         f"{int(r['n_seeds'])} × {int(r['n_samples'])}", fmt_p(r["p_adjusted"]),
                         fmt_p(r["p_equivalence_adjusted"]), r["verdict"], fmt_value(r["floor"], m),
                         fmt_value(r["mde_80"], m), _num(r["seeds_needed"])])
        out.append(Table(
            title=f"{sc.name}: each model minus its reference, paired by seed, test",
            columns=["Model", "Reference", "Summary", "Metric", "Family", "Diff", "95 % CI", "P(improvement)",
                     "Seeds × samples", "p (adj.)", "TOST p (adj.)", "Verdict", "Floor", "MDE (80 %)",
                     "Seeds needed"], rows=rows,
            note="p (adj.): Holm for the headline family, Benjamini-Hochberg q for exploratory rows. Accuracies ×100. "
                 "Effective robustness: positive = loses less than the reference. Samples 0 = test samples not "
                 "resampled (no preds.npz)."))
    return out


def terminal_table(res: StudyResults, cube: Cube) -> Table:
    """A short table for the terminal: per model and scenario, test MAE (mean over levels or subset Avg)."""
    ne = n_expected(res)
    cols, rows = [], []
    for sc in res.study.scenarios:
        cols.append(f"{sc.name} MAE" + (" (Avg)" if not sc.numeric else ""))
    for m in res.study.all_models:
        cells = []
        for sc in res.study.scenarios:
            g = cube.grid(m, sc.name, sc.name, "MAE", sc.levels)
            cells.append(fmt(mean_over_levels(g) if sc.numeric else subset_average(g), "MAE", ne))
        rows.append([m, *cells])
    return Table(title="", columns=["Model", *cols], rows=rows)

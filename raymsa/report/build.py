"""build_report(DIR): read the stored results, compute, plot, render, and replace DIR/report/ whole.

The report is built in a hidden sibling folder (DIR/.report.tmp-*) and swapped in by renames, so
a crash never leaves a half-written report over a good one. Nothing else in DIR is touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from raymsa.report.ceiling import gap_frame, gap_tables, load_ceiling
from raymsa.report.ablation import ablation_sections
from raymsa.report.knowledge import knowledge_sections
from raymsa.report.load import ReportError, StudyResults, load_study
from raymsa.report.compare import comparisons_with_components, variance_sources
from raymsa.report.cost import cost_section
from raymsa.report.verdicts import decisions_of
from raymsa.report.plots import comparisons_plot, cross_heatmap, tuning_curves, curves, importances, safe, subset_bars
from raymsa.report.render import Bullets, Figure, Section, to_html, to_markdown
from raymsa.report.stats import Cube, robustness_frame, summarize
from raymsa.report.training import seeds_section, training_frame, training_section
from raymsa.report.tuning import tuning_frame
from raymsa.report.tables import (best_config_tables, comparison_tables, cross_tables, importance_tables, level_tables,
                                  headline_table, overall_table, robustness_tables, scenario_label,
                                  subset_tables, summary_facts)

REPORT = "report"
TMP_PREFIX = ".report.tmp-"
OLD_PREFIX = ".report.old-"
STALE_S = 3600  # leftovers of a killed build older than this are removed


def _header(res: StudyResults) -> list[Section]:
    st = res.study
    ref = st.reference_model
    models = ", ".join(f"{m} (reference)" if m == ref else m for m in st.all_models)
    scen = "; ".join(f"{s.name} ({s.kind}: {', '.join(s.levels)})" for s in st.scenarios)
    obj = st.objective
    items = [
        f"Dataset: {st.dataset.upper()}",
        f"Data source: {st.data_source or 'not recorded'}",
        f"Models: {models}",
        f"Reference model for effective robustness: {ref or 'none'}",
        f"Seeds: {', '.join(map(str, st.seeds)) or 'not recorded'}",
        f"Scenarios: {scen}",
        f"Smoke run: {'yes (tiny data and budgets; numbers test the pipeline only)' if st.smoke else 'no'}",
    ]
    if obj:
        items.append("Search objective: " + ", ".join(f"{k} {v}" for k, v in obj.items()))
    if st.created:
        items.append(f"Study created: {st.created}")
    n_runs = sum(len(st.expected_seeds(m, sc.name)) for m in st.all_models for sc in st.scenarios)
    head = Section("Study", [Bullets(items)])
    miss = Section("What is missing", level=3)
    if res.missing:
        miss.add(f"{len(res.missing)} item(s) the study layout expects are absent; the report uses what exists.",
                 Bullets(list(res.missing)))
    else:
        miss.add(f"Nothing: all {n_runs} expected runs (models × scenarios × seeds = "
                 f"{len(st.all_models)} × {len(st.scenarios)} × {len(st.seeds)}) have results." if not st.rounds else
                 f"Nothing: all {n_runs} expected runs ({len(st.rounds)} seed round(s), see Seeds) have results.")
    out = [head, miss]
    if res.notes:
        out.append(Section("Notes", [Bullets(list(res.notes))], level=3))
    return out


def _sections(res: StudyResults, cube: Cube, rob, comp, tuning, plots: Path, ceiling=None, gaps=None,
              training=None, reasons: dict | None = None) -> list[Section]:
    st = res.study
    reasons = reasons or {}
    secs = _header(res)
    secs.append(Section("Summary", [
        "Measured facts only, all on the test split, from comparisons.csv: each model minus its reference, "
        "paired by seed, with a 95 % paired bootstrap interval; verdicts (better, worse, equivalent within the "
        "metric's margin, inconclusive) use p-values adjusted for multiplicity. " + variance_sources(res),
        Bullets(summary_facts(res, cube, rob, comp, reasons)
                or ["No comparison could be computed from the results present."]),
    ]))
    if not comp.empty:
        c = Section("Comparisons with the reference model", [
            "Every row of comparisons.csv. Diff = mean over seeds of the paired per-seed difference; "
            "interval = 95 % percentile bootstrap (2000 replicates) resampling seeds and test samples, the "
            "same ones for both models; p = two-sided Wald test on the bootstrap SE, TOST p = two one-sided "
            "tests against ±margin with the same SE, both adjusted (headline: Holm, with the sequential "
            "look's weight; exploratory: Benjamini-Hochberg); P(improvement) = rliable's probability that a "
            "seed of the model beats a seed of the reference; MDE (80 %) = 2.80 × the bootstrap SE "
            "(unadjusted); Seeds needed = seeds at which the observed difference would resolve (docs/report.md)."])
        if (ht := headline_table(res, comp, reasons)) is not None:
            c.add(ht)
        f = plots / "comparisons.png"
        if comparisons_plot(res, comp, f):
            c.add(Figure(f"plots/{f.name}", "MAE differences against the reference with 95 % paired bootstrap "
                                                 "intervals: green better, red worse, blue equivalent, grey "
                                                 "inconclusive (verdicts after adjustment)."))
        c.add(*comparison_tables(res, comp))
        secs.append(c)

    for sc in st.scenarios:
        s = Section(f"Scenario {scenario_label(sc)}")
        if sc.numeric:
            f = plots / f"curves__{safe(sc.name)}.png"
            if curves(res, cube, sc, f, ceiling):
                s.add(Figure(f"plots/{f.name}", f"{sc.name}: test metrics vs level, one line per model, "
                                                 "band = ± std over seeds."
                                                 + (" Dotted black: the Bayes ceiling." if ceiling else "")))
            s.add(overall_table(res, cube, sc), *level_tables(res, cube, sc, ceiling))
        else:
            f = plots / f"subset__{safe(sc.name)}.png"
            if subset_bars(res, cube, sc, f):
                s.add(Figure(f"plots/{f.name}", f"{sc.name}: test metrics per available-modality subset, "
                                                 "error bars = ± std over seeds."))
            s.add(*subset_tables(res, cube, sc, ceiling))
        secs.append(s)

    if gaps is not None and not gaps.empty:
        secs.append(Section("Distance to the Bayes ceiling", [
            "The embedded synthetic data has a computable Bayes-optimal predictor (docs/data.md, "
            "'The Bayes ceiling'): the best test metrics any model could reach from what it sees, under "
            "the same masks as each seed's runs (ceiling.csv). Per model: how far it stays from that "
            "ceiling and how much of the reference model's distance it closes.",
            *gap_tables(res, gaps)]))

    rt = robustness_tables(res, rob)
    secs.append(Section("Robustness summaries", [
        "Per model, scenario with numeric levels and headline metric: the mean over levels (LNLN "
        "'overall'), the area under the metric-vs-level curve by the trapezoid rule over the levels "
        "as given (AUILC), and MultiBench's effective robustness against the reference model, raw "
        "(not min-max normalised). Raw values for every metric are in robustness.csv.",
        *(rt or ["No scenario with numeric levels has results."]),
    ]))

    secs.extend(knowledge_sections(res, cube))  # issue 10: knowledge arms, integrity, dominance, collapse, equity
    secs.extend(ablation_sections(res, cube))  # issue 22: only for a study with report.ablation_of
    if training is not None:
        secs.append(training_section(res, training))
    seeds = seeds_section(res)
    if seeds is not None:
        secs.append(seeds)

    cross = Section("Cross-scenario matrix", [
        "Each scenario's best configuration, trained for that scenario (rows), tested under every "
        "scenario of the study (columns)."])
    for t in cross_tables(res, cube):
        m = t.title.split(":", 1)[0]
        cross.add(t)
        f = plots / f"cross__{safe(m)}.png"
        if cross_heatmap(res, cube, m, f):
            cross.add(Figure(f"plots/{f.name}", f"{m}: cross-scenario test MAE."))
    if len(cross.blocks) == 1:
        cross.add("No results under any scenario.")
    secs.append(cross)

    search = Section("Best hyperparameters", [*best_config_tables(res)])
    defaults = [m for m in st.all_models if not any(k[0] == m for k in res.best)]
    if defaults:
        search.add("Run with their default configuration (no search): " + ", ".join(defaults) + ".")
    if not tuning.empty:
        f = plots / "tuning.png"
        if tuning_curves(res, tuning, f):
            search.add("Tuning curves (Dodge et al. 2019), per scenario and model:", Figure(
                f"plots/{f.name}", "Expected best validation objective of a search of n trials, drawn without "
                "replacement from the trials the search ran (trials.csv, all repeats pooled; Tang et al. 2020's "
                "unbiased estimator of Dodge et al. 2019's curve), band ± one std. A curve still falling at the "
                "last trial says more trials would have found a better configuration. Values in tuning.csv."))
    secs.append(search)
    imp = Section("Parameter importances (Optuna)")
    for t in importance_tables(res):
        m = t.title.split(":", 1)[0]
        imp.add(t)
        f = plots / f"importances__{safe(m)}.png"
        if importances(m, [res.best[(m, sc.name)] for sc in st.scenarios if (m, sc.name) in res.best], f):
            imp.add(Figure(f"plots/{f.name}", f"{m}: Optuna parameter importances."))
    if not imp.blocks:
        imp.add("No importances were recorded.")
    secs.append(imp)
    secs.extend(s for s in [cost_section(res, plots)] if s is not None)  # issue 20: timing.csv

    secs.append(Section("Files", [Bullets([
        "results.csv: every eval row (tidy, sorted)",
        "summary.csv: mean, std (ddof=0), n_seeds per model, scenario, eval_scenario, level, split, metric",
        "robustness.csv: mean over levels, AUILC, effective robustness per model, scenario, metric (raw units)",
        "comparisons.csv: each model minus its reference, paired, with bootstrap intervals, adjusted p-values, "
        "equivalence tests, verdicts, resolution floors, power",
        "tuning.csv: expected best validation objective vs number of trials per model and scenario",
        "training.csv: per run the epochs run, the cap, the selected epoch and why training stopped",
        *(["ceiling_gaps.csv: per scenario, metric and model the mean over levels, the Bayes ceiling's, "
           "the paired gap and the share of the reference's gap closed"] if gaps is not None else []),
        "plots/: the figures of this report (PNG)",
        f"Regenerate: python -m raymsa.report {res.dir}",
    ])]))
    return secs


def write_report(res: StudyResults, out: Path) -> None:
    """Write every report file of `res` into the (empty) folder `out`."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    res.results.to_csv(out / "results.csv", index=False, na_rep="NaN")
    summarize(res.results).to_csv(out / "summary.csv", index=False, na_rep="NaN")
    cube = Cube(res, "test")
    rob = robustness_frame(res, cube, res.study.metrics)
    rob.to_csv(out / "robustness.csv", index=False, na_rep="NaN")
    comp, comps = comparisons_with_components(res, cube)
    comp.to_csv(out / "comparisons.csv", index=False, na_rep="NaN")
    reasons = {(d.model, d.reference, d.scenario): d.reason
               for d in decisions_of(comp, res.study, comps)}
    tuning = tuning_frame(res)
    if not tuning.empty:
        tuning.to_csv(out / "tuning.csv", index=False, na_rep="NaN")
    ceiling = load_ceiling(res)  # None on real data
    gaps = gap_frame(res, cube, ceiling) if ceiling is not None else None
    if gaps is not None:
        gaps.to_csv(out / "ceiling_gaps.csv", index=False, na_rep="NaN")
    training = training_frame(res)
    training.to_csv(out / "training.csv", index=False)
    secs = _sections(res, cube, rob, comp, tuning, plots, ceiling, gaps, training, reasons)
    title = f"Study report: {res.study.name}"
    (out / "report.md").write_text(to_markdown(title, secs))
    (out / "report.html").write_text(to_html(title, secs, out))


def _clean_stale(d: Path) -> None:
    now = time.time()
    for p in list(d.glob(TMP_PREFIX + "*")) + list(d.glob(OLD_PREFIX + "*")):
        try:
            if now - p.stat().st_mtime > STALE_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _swap_in(new: Path, dest: Path) -> None:
    """Replace `dest` by `new` with renames; on failure the previous report is put back."""
    if dest.exists() and not dest.is_dir():
        raise ReportError(f"{dest}: exists and is not a folder")
    old = None
    if dest.exists():
        old = dest.parent / f"{OLD_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        os.rename(dest, old)
    try:
        os.rename(new, dest)
    except OSError:
        if old is not None and not dest.exists():
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_report(dir: str | Path) -> Path:
    """Build DIR/report/ from DIR's stored results; returns the report folder.

    Raises ReportError (message names the path) for a folder that is not a study, has no results,
    or holds a malformed file.
    """
    return build_from(load_study(dir))


def build_from(res: StudyResults) -> Path:
    """build_report for results already loaded with load_study."""
    d = res.dir
    _clean_stale(d)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=d))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the report is meant to be read by others
    try:
        write_report(res, tmp)
        _swap_in(tmp, d / REPORT)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return d / REPORT

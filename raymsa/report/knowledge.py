"""Report sections on what a model is told and what it does with it (issue 10):

- the worth of knowing the erasure masks: where a study runs both arms of a scenario (same kind and
  levels, `knowledge: unknown` and `knowledge: known`), the known-minus-unknown gap of the headline
  metric per level and its mean over levels, per model;
- integrity estimation: mean |ι̂ − ι| (and the bias, mean ι̂ − ι) per modality and level, for every
  model that writes diag/integrity_* rows (Senti-iFusion, FSRF);
- dominant-modality shares per scenario (Senti-iFusion's diag/dominant_share/*);
- collapse: mean cosine between samples of each factorized part (diag/cosine/*);
- noise parts: label R² of their best linear read-out (diag/label_r2/*, FSRF);
- modality equity from the subset evaluations: Δ_m = MAE(without m) − MAE(all three) per modality
  and equity = 1 − Gini(max(Δ, 0)) (see docs/missingness.md, 'Modality equity').

Everything is read from the test rows of runs under their own scenario (eval_scenario = scenario),
except equity, which reads each run's rows under a subset scenario. Means are over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raymsa.report.compare import BETTER, WORSE, compare_one, summaries
from raymsa.report.load import DIAG_PREFIX, Scenario, StudyResults, level_display
from raymsa.report.render import Section, Table
from raymsa.report.stats import Cube

MODALITIES = ("text", "audio", "vision")
LETTER = {"text": "l", "audio": "a", "vision": "v"}


def _fmt(x: float, signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def headline_metric(res: StudyResults) -> str:
    obj = res.study.objective.get("metric", "MAE")
    return obj if obj in res.study.metrics else "MAE"


def arm_pairs(res: StudyResults) -> list[tuple[Scenario, Scenario]]:
    """(unknown, known) scenario pairs of the study: same kind and levels, one of each arm."""
    scen = res.study.scenarios
    pairs, used = [], set()
    for u in scen:
        if u.knowledge != "unknown":
            continue
        for k in scen:
            if k.knowledge == "known" and k.name not in used and k.kind == u.kind and k.levels == u.levels:
                pairs.append((u, k))
                used.add(k.name)
                break
    return pairs


def _own(res: StudyResults) -> pd.DataFrame:
    t = res.test
    return t[t["scenario"] == t["eval_scenario"]]


def _per_level(df: pd.DataFrame, model: str, scenario: str, metric: str) -> dict[str, float]:
    """level -> mean over seeds of one metric of one model's own-scenario test rows."""
    g = df[(df["model"] == model) & (df["eval_scenario"] == scenario) & (df["metric"] == metric)]
    return g.groupby("level")["value"].mean().to_dict()


def gap_frame(res: StudyResults) -> pd.DataFrame:
    """Tidy known-minus-unknown gaps: model, kind, unknown, known, level, metric, gap (mean over seeds)."""
    own, metric = _own(res), headline_metric(res)
    rows = []
    for u, k in arm_pairs(res):
        for model in res.study.all_models:
            a, b = _per_level(own, model, u.name, metric), _per_level(own, model, k.name, metric)
            for lv in u.levels:
                if lv in a and lv in b:
                    rows.append({"model": model, "kind": u.kind, "unknown": u.name, "known": k.name,
                                 "level": lv, "metric": metric, "gap": b[lv] - a[lv]})
    return pd.DataFrame(rows, columns=["model", "kind", "unknown", "known", "level", "metric", "gap"])


def _gap_section(res: StudyResults, cube: Cube | None) -> Section:
    metric = headline_metric(res)
    s = Section("What knowing the masks is worth", [
        f"Where the study runs a scenario under both arms, test {metric} of the `known` arm (the model "
        "is given the erasure masks) minus the `unknown` arm (the field's protocol: corrupted input and "
        "padding masks only), mean over seeds, per level and as the mean over levels. "
        + ("Negative = knowing the masks lowers the error." if metric == "MAE" else "")])
    gaps = gap_frame(res)
    if gaps.empty:
        s.add("This study runs no scenario under both arms (add a copy of a scenario with "
              "`knowledge: known` and its own name).")
        return s
    intervals = {(r["model"], r["scenario"]): r for r in gap_intervals(res, cube)}
    for (un, kn), g in gaps.groupby(["unknown", "known"], sort=False):
        u = res.study.scenario(un)
        rows = []
        for model, gm in g.groupby("model", sort=False):
            by = dict(zip(gm["level"], gm["gap"]))
            cells = [_fmt(by.get(lv, np.nan), signed=True) for lv in u.levels]
            r = intervals.get((model, kn))
            ci = f"[{_fmt(r['ci_low'], signed=True)}, {_fmt(r['ci_high'], signed=True)}]" if r else "n/a"
            v = ("known better" if r["verdict"] == BETTER else "known worse" if r["verdict"] == WORSE
                 else r["verdict"]) if r else "n/a"
            rows.append([model, *cells, _fmt(float(np.mean(list(by.values()))), signed=True), ci, v])
        s.add(Table(title=f"{kn} − {un}: test {metric}",
                    columns=["Model", *[level_display(lv) for lv in u.levels], "Mean", "95 % CI", "Verdict"],
                    rows=rows))
    s.add("95 % CI: the paired bootstrap of comparisons.csv (seeds and test samples resampled together; "
          "each seed evaluates both arms under the same masks) on the mean over levels; the two arms "
          "are searched separately, so the gap includes what each arm's search found.")
    return s


def gap_intervals(res: StudyResults, cube: Cube | None = None) -> list[dict]:
    """Per model and arm pair: known minus unknown on the mean over levels of the headline metric,
    with the same paired interval and verdict as a model-vs-reference row of comparisons.csv."""
    cube, metric, rows = cube or Cube(res, "test"), headline_metric(res), []
    for u, k in arm_pairs(res):
        mean = summaries(k)[0]
        for model in res.study.all_models:
            r = compare_one(res, cube, model, model, k, mean, metric, ref_scenario=u.name)
            if r is not None:
                rows.append(r)
    return rows


def _diag_frame(res: StudyResults, what: str) -> pd.DataFrame:
    own = _own(res)
    d = own[own["metric"].str.startswith(f"{DIAG_PREFIX}{what}/")].copy()
    d["part"] = d["metric"].str.slice(len(DIAG_PREFIX) + len(what) + 1)
    return d


def _integrity_section(res: StudyResults) -> Section:
    s = Section("Integrity estimation", [
        "Mean |ι̂ − ι| between each model's estimated integrity and the true observed fraction of each "
        "modality on test, per level (bias ι̂ − ι in parentheses; positive = estimated more complete "
        "than it is), mean over seeds. The true fractions are the estimator's training target only."])
    mae, bias = _diag_frame(res, "integrity_mae"), _diag_frame(res, "integrity_bias")
    if mae.empty:
        s.add("No run wrote integrity diagnostics.")
        return s
    for (model, scen), g in mae.groupby(["model", "eval_scenario"], sort=False):
        sc = res.study.scenario(scen)
        levels = list(sc.levels) if sc else sorted(set(g["level"]))
        gb = bias[(bias["model"] == model) & (bias["eval_scenario"] == scen)]
        e = g.groupby(["part", "level"])["value"].mean()
        b = gb.groupby(["part", "level"])["value"].mean()
        rows = [[m, *[f"{_fmt(e.get((m, lv), np.nan))} ({_fmt(b.get((m, lv), np.nan), signed=True)})"
                      for lv in levels]] for m in MODALITIES if m in set(g["part"])]
        s.add(Table(title=f"{model} under {scen}: integrity error (bias)",
                    columns=["Modality", *[level_display(lv) for lv in levels]], rows=rows))
    return s


def _share_section(res: StudyResults) -> Section:
    s = Section("Dominant modality", [
        "Share of test samples whose largest dominance weight is each modality (Senti-iFusion's "
        "integrity-guided adaptive fusion), mean over the levels of the run's own scenario and over seeds."])
    d = _diag_frame(res, "dominant_share")
    if d.empty:
        s.add("No run wrote dominance diagnostics.")
        return s
    for model, g in d.groupby("model", sort=False):
        rows = []
        for scen, gs in g.groupby("eval_scenario", sort=False):
            by = gs.groupby("part")["value"].mean()
            rows.append([scen, *[_fmt(by.get(m, np.nan)) for m in MODALITIES]])
        s.add(Table(title=f"{model}: dominant-modality shares", columns=["Scenario", *MODALITIES], rows=rows))
    return s


def _part_section(res: StudyResults, what: str, title: str, text: str, table: str) -> Section:
    """One table per model: a per-part diagnostic (diag/<what>/<part>) by eval scenario, mean over
    levels and seeds."""
    s = Section(title, [text])
    d = _diag_frame(res, what)
    for model, g in d.groupby("model", sort=False):
        scens = list(dict.fromkeys(g["eval_scenario"]))
        by = g.groupby(["part", "eval_scenario"])["value"].mean()
        parts = list(dict.fromkeys(g["part"]))
        rows = [[p, *[_fmt(by.get((p, sc), np.nan)) for sc in scens]] for p in parts]
        s.add(Table(title=f"{model}: {table}", columns=["Part", *scens], rows=rows))
    return s


def gini(x: np.ndarray) -> float:
    """Gini coefficient sum_ij |x_i - x_j| / (2 n^2 mean(x)); 0 for all-equal (or all-zero) x."""
    x = np.asarray(x, dtype=float)
    mean = x.mean()
    if mean <= 0:
        return 0.0
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * mean))


def equity_frame(res: StudyResults) -> pd.DataFrame:
    """Per model, trained scenario and subset eval scenario: Δ_m = MAE(without m) − MAE(lav) and
    equity = 1 − Gini(max(Δ, 0)), from the mean over seeds."""
    t = res.test[res.test["metric"] == "MAE"]
    rows = []
    for sub in res.study.scenarios:
        if sub.kind != "subset" or not {"la", "lv", "av", "lav"} <= set(sub.levels):
            continue
        g = t[t["eval_scenario"] == sub.name]
        for (model, trained), gm in g.groupby(["model", "scenario"], sort=False):
            by = gm.groupby("level")["value"].mean()
            if not {"la", "lv", "av", "lav"} <= set(by.index):
                continue
            without = {"text": "av", "audio": "lv", "vision": "la"}
            delta = {m: float(by[without[m]] - by["lav"]) for m in MODALITIES}
            rows.append({"model": model, "scenario": trained, "eval_scenario": sub.name,
                         **{f"delta_{m}": delta[m] for m in MODALITIES},
                         "equity": 1.0 - gini(np.maximum(np.array(list(delta.values())), 0.0))})
    return pd.DataFrame(rows)


def _equity_section(res: StudyResults) -> Section:
    s = Section("Modality equity", [
        "How evenly a model degrades when each modality goes missing, from its test MAE under a subset "
        "scenario: Δ_m = MAE(the other two) − MAE(all three), and equity = 1 − Gini(max(Δ_l, 0), "
        "max(Δ_a, 0), max(Δ_v, 0)) (1: every modality missed alike; 0: one modality carries everything). "
        "In the spirit of MissBench's Modality Equity Index (arXiv 2603.09874), whose exact formula is "
        "not reproduced here. Mean over seeds."])
    e = equity_frame(res)
    if e.empty:
        s.add("No subset scenario with la, lv, av and lav in the study's evaluations.")
        return s
    rows = [[r.model, r.scenario, *[_fmt(getattr(r, f"delta_{m}"), signed=True) for m in MODALITIES],
             _fmt(r.equity)] for r in e.itertuples()]
    s.add(Table(title="Modality equity (test MAE)", columns=["Model", "Trained for", "Δ without l", "Δ without a",
                                                             "Δ without v", "Equity"], rows=rows))
    return s


def knowledge_sections(res: StudyResults, cube: Cube | None = None) -> list[Section]:
    """The sections above, in report order; diagnostics sections only when some run wrote them.
    cube: the report's test-split Cube, when the caller has one (else built here)."""
    out = [_gap_section(res, cube)]
    has = set(res.test["metric"])
    if any(m.startswith(f"{DIAG_PREFIX}integrity_mae/") for m in has):
        out.append(_integrity_section(res))
    if any(m.startswith(f"{DIAG_PREFIX}dominant_share/") for m in has):
        out.append(_share_section(res))
    if any(m.startswith(f"{DIAG_PREFIX}cosine/") for m in has):
        out.append(_part_section(
            res, "cosine", "Collapse of factorized parts",
            "Mean cosine between different test samples of each factorized part (1 = every sample has the "
            "same vector: collapsed), mean over levels and seeds.", "cosine between samples"))
    if any(m.startswith(f"{DIAG_PREFIX}label_r2/") for m in has):
        out.append(_part_section(
            res, "label_r2", "Label content of the noise parts",
            "Squared correlation over the test split between the label and each noise part's best linear "
            "read-out, the ridge the model's noise penalty fights (fitted on running moments of its training "
            "batches; near 0 = no linear label content left; about 1 / the test size from chance alone), "
            "mean over levels and seeds.", "label R² of the noise read-out"))
    out.append(_equity_section(res))
    return out

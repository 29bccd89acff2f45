"""The ablation table in the papers' layout: one row per variant with a component switched off, its
headline metric under each scenario, and its difference to the full model with the paired interval
of comparisons.csv (raymsa.report.compare.compare_one, the full model as the reference of every row)
and a verdict whose p-values are Holm-adjusted over the table.

A study is an ablation of LABEL when its file says `report: {ablation_of: LABEL}` (StudyConfig.report,
written into study.json's "config"); every other entry of `models:` is then one row, and what it
switched off is read from its `config:` in study.json (e.g. `use_distill: false`).
"""

from __future__ import annotations

import json
import math

import numpy as np

from raymsa.report import verdicts as V
from raymsa.report.compare import compare_one, summaries
from raymsa.report.load import StudyResults
from raymsa.report.render import Section, Table
from raymsa.report.stats import Cube
from raymsa.report.tables import fmt_p


def _config(res: StudyResults) -> dict:
    try:
        return json.loads((res.dir / "study.json").read_text()).get("config") or {}
    except (OSError, ValueError):
        return {}


def ablation_of(res: StudyResults) -> str | None:
    """The full model's label when the study is an ablation, else None."""
    full = ((_config(res).get("report") or {}).get("ablation_of"))
    return full if isinstance(full, str) and full in res.study.all_models else None


def switched(entry: dict) -> str:
    """What a variant changes against the defaults, from its study-file `config:`."""
    cfg = {k: v for k, v in (entry.get("config") or {}).items() if k != "variant"}
    return ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in cfg.items()) or "—"


def _level_mean(cube: Cube, model: str, sc, metric: str, levels) -> float:
    g = cube.grid(model, sc.name, sc.name, metric, levels).to_numpy(float)  # (S, L)
    ok = np.isfinite(g).all(axis=1)
    return float(g[ok].mean()) if ok.any() else math.nan


def _f(x: float, signed: bool = False) -> str:
    return "—" if x is None or not math.isfinite(x) else (f"{x:+.3f}" if signed else f"{x:.3f}")


def ablation_sections(res: StudyResults, cube: Cube | None = None, full: str | None = None) -> list[Section]:
    full = full or ablation_of(res)
    if full is None:
        return []
    cube = cube if cube is not None else Cube(res)
    st = res.study
    metric = st.objective.get("metric", "MAE")
    metric = metric if metric in st.metrics else "MAE"
    entries = _config(res).get("models") or {}
    variants = [m for m in st.all_models if m != full]
    cols = ["Variant", "Switched off"]
    for sc in st.scenarios:
        cols += [f"{sc.name}: {metric}", f"{sc.name}: Δ vs {full} [95% CI]", f"{sc.name}: verdict"]
    rows = [[full, "— (full model)"]]
    for sc in st.scenarios:
        rows[0] += [_f(_level_mean(cube, full, sc, metric, summaries(sc)[0].levels)), "—", "—"]
    # the ablation table is one family (variants x scenarios): Holm over it, as for the headline
    # family, so that a study of k switches does not get k chances at a 'worse'
    found = {(v, sc.name): compare_one(res, cube, v, full, sc, summaries(sc)[0], metric)
             for v in variants for sc in st.scenarios}
    tested = {k: r for k, r in found.items() if r is not None}
    margin = V.margin_for(st, metric)
    p = np.array([V.p_difference(r["diff"], r["se_test"], r["df"]) for r in tested.values()])
    p_eq = np.array([V.p_equivalence(r["diff"], r["se_test"], margin, r["df"]) for r in tested.values()])
    adj = dict(zip(tested, zip(V.holm(p), V.holm(p_eq)))) if tested else {}
    for v in variants:
        row = [v, switched(entries.get(v) or {})]
        for sc in st.scenarios:
            summ = summaries(sc)[0]
            r = found[v, sc.name]
            row.append(_f(_level_mean(cube, v, sc, metric, summ.levels)))
            if r is None:
                row += ["— (no shared seed)", "—"]
            else:
                pa, pea = adj[v, sc.name]
                verdict = V.verdict_of(r["diff"], pa, pea, r["_higher"])
                row += [f"{_f(r['diff'], True)} [{_f(r['ci_low'], True)}, {_f(r['ci_high'], True)}] "
                        f"(n={r['n_seeds']})", f"{verdict} (Holm p {fmt_p(pa)})"]
        rows.append(row)
    summ_names = sorted({summaries(sc)[0].name for sc in st.scenarios})
    s = Section(f"Ablation of {full}", [
        f"Each row switches one component of {full} off; test {metric}, {' / '.join(summ_names)}, mean over "
        f"seeds. Δ is the row minus the full model, paired by seed (and by sample where predictions were "
        f"saved), with the percentile bootstrap interval of comparisons.csv. The verdict is the variant's "
        f"against the full model, with its p-values Holm-adjusted over this table's {len(tested)} "
        f"comparisons (family-wise 5 %; equivalence: two one-sided tests against ±{_f(margin)}): 'worse' means "
        f"switching the component off hurt (the component does measurable work), 'better' that the model is "
        f"better without it."])
    s.add(Table(title=f"Ablation of {full}: test {metric}", columns=cols, rows=rows))
    return [s]

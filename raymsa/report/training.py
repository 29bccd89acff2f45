"""How each retrain ended: epochs run against the cap, the selected epoch, why it stopped (run.json,
written by raymsa.train.loop beside eval.csv), and the seeds each comparison got in which round.

A run "still improving at the cap" stopped because it reached `train.epochs` with its best
validation objective in that last epoch: the cap, not the data, ended it. The issue's goal is at
most 20 % of a study's runs so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from raymsa.report.load import ReportError, StudyResults
from raymsa.report.render import Section, Table

COLUMNS = ("model", "scenario", "seed", "epochs_run", "cap", "best_epoch", "stop_reason", "improving_at_cap")


def read_run_record(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: not readable JSON ({e})") from None
    for key in ("epochs_run", "cap", "best_epoch"):
        if not isinstance(d.get(key), int) or isinstance(d.get(key), bool):
            raise ReportError(f"{path}: key '{key}': expected an integer, got {d.get(key)!r}")
    if not isinstance(d.get("stop_reason"), str):
        raise ReportError(f"{path}: key 'stop_reason': expected a string, got {d.get('stop_reason')!r}")
    return d


def training_frame(res: StudyResults) -> pd.DataFrame:
    """training.csv: one row per run with a run.json (runs of older studies have none)."""
    rows = []
    st = res.study
    for m in st.all_models:
        for sc in st.scenarios:
            for seed in st.expected_seeds(m, sc.name):
                p = res.dir / "runs" / f"{m}__{sc.name}__seed{seed}" / "run.json"
                if not p.exists():
                    continue
                d = read_run_record(p)
                rows.append({"model": m, "scenario": sc.name, "seed": seed, "epochs_run": d["epochs_run"],
                             "cap": d["cap"], "best_epoch": d["best_epoch"], "stop_reason": d["stop_reason"],
                             "improving_at_cap": d["stop_reason"] == "cap" and d["best_epoch"] == d["cap"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _range(v: pd.Series) -> str:
    lo, hi = int(v.min()), int(v.max())
    return f"{v.mean():.1f} ({lo}-{hi})" if lo != hi else str(lo)


def training_section(res: StudyResults, frame: pd.DataFrame) -> Section:
    s = Section("How training ended", [
        "Each retrain stops when its validation objective has not improved by more than `min_delta` for "
        "`patience` judged epochs (plateau), or at the cap `train.epochs`; the checkpoint it is tested with "
        "is its best validation epoch (docs/training.md). 'Still improving at the cap' = stopped by the cap "
        "with its best epoch the last one: there, more epochs might have helped."])
    if frame.empty:
        s.add("No run recorded how it ended (run.json: studies before plateau stopping).")
        return s
    rows = []
    for (m, sc), g in frame.groupby(["model", "scenario"], sort=False):
        rows.append([m, sc, str(len(g)), _range(g["epochs_run"]), str(int(g["cap"].max())), _range(g["best_epoch"]),
                     ", ".join(f"{k} {v}" for k, v in g["stop_reason"].value_counts().sort_index().items()),
                     str(int(g["improving_at_cap"].sum()))])
    share = float(np.mean(frame["improving_at_cap"]))
    s.add(Table(title="Epochs per run (mean, range)",
                columns=["Model", "Trained for", "Runs", "Epochs run", "Cap", "Selected epoch", "Stopped by",
                         "Still improving at the cap"], rows=rows,
                note=f"{int(frame['improving_at_cap'].sum())} of {len(frame)} runs ({100 * share:.0f} %) were "
                     "still improving at the cap."))
    return s


def seeds_section(res: StudyResults) -> Section | None:
    """The seed rounds of an adaptive study: which runs got which seeds, and why."""
    st = res.study
    plan = st.seed_plan
    if plan is None or (len(st.rounds) <= 1 and plan.max <= plan.initial):
        return None
    s = Section("Seeds", [
        f"Seeds were added in rounds: {plan.initial} initial, then {plan.step} more per round to the "
        f"headline comparisons still open, up to {plan.max} (looks planned at "
        f"{', '.join(map(str, plan.looks))} seeds; docs/report.md, 'Seeds where they are needed')."])
    rows = [[str(i), ", ".join(map(str, seeds)), str(len(runs)), why] for i, (seeds, runs, why) in enumerate(st.rounds)]
    s.add(Table(title="Seed rounds", columns=["Round", "Seeds", "Runs (model × scenario)", "Why"], rows=rows))
    return s

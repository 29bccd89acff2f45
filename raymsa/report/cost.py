"""The report's cost section: where a study's wall time went, from <study>/timing.csv.

timing.csv (raymsa.study.runner, TIMING_COLUMNS) holds per Tune run (phase `search__...`,
`retrain`) each trial's seconds by part, the run's wall and slot-seconds (wall x concurrent trial
slots), and the study's own steps (phase `study`: data, ray_start, ceiling, ray_shutdown, report). A Tune
run's wall is shared out over its parts in proportion to their trial-seconds; what its slots spent
outside any trial (scheduling, actor starts, slots idle while a batch finishes) is `other`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from raymsa.report.load import StudyResults
from raymsa.report.plots import _new
from raymsa.report.render import Figure, Section, Table

PARTS = {  # part in timing.csv -> what the report calls it, in the order of the table and the bars
    "ray_start": "Ray start", "data": "data check", "ceiling": "Bayes ceiling", "trial_startup": "trial start-up",
    "train": "training steps", "valid": "validation", "final_eval": "final evaluation",
    "diagnostics": "diagnostics", "checkpoint": "checkpointing", "other": "scheduling, idle slots",
    "ray_shutdown": "Ray shutdown", "report": "report",
}
COLORS = ["#7f7f7f", "#bcbd22", "#dbdb8d", "#8c564b", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#c7c7c7",
          "#17becf", "#e377c2"]


def load_timing(path: Path) -> pd.DataFrame:
    """timing.csv as a frame; a ValueError naming the file for one that is not a timing table."""
    df = pd.read_csv(path, dtype={"phase": str, "trial": str, "part": str}, keep_default_na=False)
    missing = {"phase", "trial", "part", "seconds"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: no column(s) {sorted(missing)}")
    df["seconds"] = pd.to_numeric(df["seconds"], errors="raise")
    return df


def cost_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per phase: wall and the wall shared out by part (seconds; columns = PARTS present)."""
    rows = []
    for phase, g in df.groupby("phase", sort=False):
        phase_rows = g[g["trial"] == ""]
        trials = g[g["trial"] != ""]
        if phase == "study":
            parts = phase_rows.groupby("part")["seconds"].sum().to_dict()
            rows.append({"phase": phase, "wall": sum(parts.values()), **parts})
            continue
        wall = phase_rows.loc[phase_rows["part"] == "wall", "seconds"].sum()
        slots = phase_rows.loc[phase_rows["part"] == "slot_seconds", "seconds"].sum()
        parts = trials.groupby("part")["seconds"].sum().to_dict()
        parts["other"] = max(0.0, slots - sum(parts.values()))
        total = sum(parts.values())
        share = wall / total if total > 0 else 0.0
        rows.append({"phase": phase, "wall": wall, **{k: v * share for k, v in parts.items()}})
    out = pd.DataFrame(rows).fillna(0.0)
    cols = [p for p in PARTS if p in out.columns]
    return out[["phase", "wall", *cols]]


def _group(phase: str) -> str:
    return "search" if phase.startswith("search__") else phase


def cost_section(res: StudyResults, plots: Path) -> Section | None:
    """The section, or None for a study without timing.csv (one run before timing was recorded)."""
    path = Path(res.dir) / "timing.csv"
    if not path.exists():
        return None
    sec = Section("Cost: where the time went", [
        "Wall seconds of each phase from timing.csv, shared out over the parts in proportion to the "
        "seconds the trials spent on each (with several trials at once a phase's wall is shorter than "
        "its trials' sum); 'scheduling, idle slots' is what the trial slots spent outside a trial. "
        "The report's own build is recorded after it, so it shows from the next build on."])
    try:
        frame = cost_frame(load_timing(path))
    except (ValueError, KeyError, pd.errors.ParserError) as e:
        sec.add(f"timing.csv could not be read: {e}")
        return sec
    if frame.empty:
        sec.add("timing.csv holds no rows.")
        return sec
    parts = [c for c in frame.columns if c in PARTS]
    grouped = frame.assign(phase=frame["phase"].map(_group)).groupby("phase", sort=False).sum(numeric_only=True)
    total = grouped.sum()
    cols = ["phase", "wall s", *[PARTS[p] for p in parts]]

    def fmt(name, r):
        return [name, f"{r['wall']:.0f}", *[f"{r[p]:.0f}" for p in parts]]

    rows = [fmt(name, r) for name, r in grouped.iterrows()] + [fmt("total", total)]
    share = ["share of the total", "100 %", *[f"{100 * total[p] / total['wall']:.0f} %" if total["wall"] > 0 else ""
                                              for p in parts]]
    sec.add(Table("Wall seconds by phase and part", cols, rows + [share]))
    if len(frame) > len(grouped):
        sec.add(Table("Wall seconds of each Tune run", cols, [fmt(r["phase"], r) for _, r in frame.iterrows()]))
    f = plots / "cost.png"
    if _stacked_bar(grouped, parts, f):
        sec.add(Figure(f"plots/{f.name}", "Wall seconds of each phase, stacked by part (timing.csv)."))
    return sec


def _stacked_bar(grouped: pd.DataFrame, parts: list[str], path: Path) -> bool:
    if grouped.empty or grouped["wall"].sum() <= 0:
        return False
    fig = _new((7.0, 0.6 * len(grouped) + 1.8))
    ax = fig.add_subplot()
    left = pd.Series(0.0, index=grouped.index)
    for p in parts:
        ax.barh(list(grouped.index), grouped[p], left=left, label=PARTS[p], color=COLORS[list(PARTS).index(p)])
        left = left + grouped[p]
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=7, frameon=False)
    fig.savefig(path)
    return True

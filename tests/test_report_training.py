"""The report's 'How training ended' and 'Seeds' sections: read from each run's run.json and from
study.json's seed rounds; runs a round did not ask for are not expected."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from raymsa.report.build import build_report
from raymsa.report.load import load_study
from raymsa.report.training import training_frame

COLS = ["model", "scenario", "eval_scenario", "level", "seed", "split", "metric", "value", "config_id", "knowledge"]


def make(root: Path) -> Path:
    d = root / "s"
    rounds = [{"round": 0, "seeds": [1, 2], "runs": ["fsrf__intra", "late_fusion__intra"], "why": "initial seeds"},
              {"round": 1, "seeds": [3], "runs": ["fsrf__intra", "late_fusion__intra"], "why": "1 open"}]
    (d / "runs").mkdir(parents=True)
    (d / "study.json").write_text(json.dumps({
        "name": "s", "dataset": "mosi", "models": ["fsrf", "late_fusion"], "reference_model": "late_fusion",
        "seeds": [1, 2, 3], "seed_plan": {"initial": [1, 2], "max": 3, "step": 1, "looks": [2, 3]},
        "rounds": rounds, "scenarios": [{"name": "intra", "kind": "intra", "levels": [0.0, 0.5]}],
        "objective": {"metric": "MAE", "mode": "min"}}))
    for model in ("fsrf", "late_fusion"):
        for seed in (1, 2, 3):
            run = d / "runs" / f"{model}__intra__seed{seed}"
            run.mkdir()
            rows = [(model, "intra", "intra", lv, seed, "test", "MAE", 1.0 + 0.1 * seed, "c", "unknown")
                    for lv in ("0", "0.5")]
            pd.DataFrame(rows, columns=COLS).to_csv(run / "eval.csv", index=False)
            # fsrf: seed 1 stopped on a plateau at 7 of 12 (best 4); seeds 2, 3 reached the cap, seed 3
            # with its best epoch the last one (still improving)
            ran, best, why = {1: (7, 4, "plateau"), 2: (12, 9, "cap"), 3: (12, 12, "cap")}[seed]
            if model == "late_fusion":
                ran, best, why = 5, 2, "plateau"
            (run / "run.json").write_text(json.dumps({"epochs_run": ran, "cap": 12, "best_epoch": best,
                                                      "stop_reason": why, "history": []}))
    return d


def test_training_frame_and_sections(tmp_path):
    d = make(tmp_path)
    res = load_study(d)
    assert res.missing == []  # seed 3 was asked for by round 1: every expected run is there
    f = training_frame(res)
    assert len(f) == 6
    assert f["improving_at_cap"].sum() == 1
    assert set(f.loc[f["model"] == "late_fusion", "stop_reason"]) == {"plateau"}
    out = build_report(d)
    md = (out / "report.md").read_text()
    assert "How training ended" in md and "1 of 6 runs (17 %) were still improving at the cap" in md
    assert "Seed rounds" in md and "1 open" in md
    assert pd.read_csv(out / "training.csv")["epochs_run"].tolist() == [7, 12, 12, 5, 5, 5]


def test_a_run_a_round_skipped_is_not_missing_but_one_it_asked_for_is(tmp_path):
    d = make(tmp_path)
    for p in (d / "runs" / "fsrf__intra__seed3").iterdir():
        p.unlink()
    res = load_study(d)
    assert any("fsrf__intra__seed3" in m for m in res.missing)

"""raymsa.report on a fake study folder with known values, so a few numbers can be checked by hand.

The fake study (MOSI keys): fsrf, senti_ifusion and the reference late_fusion; scenarios intra
(r = 0.0..0.9), inter (0.0, 0.2, 0.4, 0.6) and subset; seeds 1111/1112/1113 shifting every value by
-0.01/0/+0.01. Each curve is linear in the level r:
    MAE      = MAE0[m] + SLOPE[m] * r + seed shift (+0.05 when tested under another scenario)
    accuracy = base[metric] + BONUS[m] - ACC_SLOPE[m] * r + seed shift
so fsrf is built to be more robust than late_fusion (MAE slope 0.1 vs 0.5) and senti_ifusion less
(0.6). Subset levels use a stand-in r per subset (SUBSET_R). Two runs are absent on purpose.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from raymsa.report import ReportError, build_report, load_study
from raymsa.report.__main__ import main

MODELS = ("fsrf", "senti_ifusion", "late_fusion")
SEEDS = (1111, 1112, 1113)
SHIFT = {1111: -0.01, 1112: 0.0, 1113: 0.01}
INTRA = [round(0.1 * i, 1) for i in range(10)]
INTER = [0.0, 0.2, 0.4, 0.6]
SUBSETS = ["l", "a", "v", "la", "lv", "av", "lav"]
SUBSET_R = {"l": 0.2, "a": 0.8, "v": 0.9, "la": 0.15, "lv": 0.1, "av": 0.6, "lav": 0.0}
SCENARIOS = {"intra": ("intra", INTRA), "inter": ("inter", INTER), "subset": ("subset", SUBSETS)}
METRICS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")
MAE0 = {"fsrf": 0.80, "senti_ifusion": 0.78, "late_fusion": 0.90}
SLOPE = {"fsrf": 0.1, "senti_ifusion": 0.6, "late_fusion": 0.5}
BASE = {"Has0_acc_2": 0.78, "Has0_F1_score": 0.78, "Non0_acc_2": 0.80, "Non0_F1_score": 0.80,
        "Mult_acc_5": 0.45, "Mult_acc_7": 0.40}
BONUS = {"fsrf": 0.02, "senti_ifusion": 0.01, "late_fusion": 0.0}
ACC_SLOPE = {"fsrf": 0.05, "senti_ifusion": 0.3, "late_fusion": 0.2}
ABSENT = {("senti_ifusion", "inter", 1113)}  # no run folder at all
UNFINISHED = {("fsrf", "inter", 1112)}  # run folder without eval.csv
NAN_CORR = ("senti_ifusion", "intra", 1113, "0.9")  # Corr of a constant predictor
NO_LEVEL = ("late_fusion", "subset", 1111, "lav")  # a run whose own-scenario test rows lack a level


def value(model: str, scenario: str, eval_scenario: str, level, seed: int, metric: str) -> float:
    r = SUBSET_R[level] if isinstance(level, str) else level
    cross = 0.05 if eval_scenario != scenario else 0.0
    if metric == "MAE":
        return MAE0[model] + SLOPE[model] * r + SHIFT[seed] + cross
    if metric == "Corr":
        return 0.7 - SLOPE[model] * r / 2 + SHIFT[seed]
    return BASE[metric] + BONUS[model] - ACC_SLOPE[model] * r + SHIFT[seed] - cross


def level_text(level) -> str:
    return level if isinstance(level, str) else f"{level:g}"


def make_study(root: Path, name: str = "fake") -> Path:
    d = root / name
    (d / "runs").mkdir(parents=True)
    study = {
        "name": name, "dataset": "mosi", "data_source": "synthetic (test)", "models": list(MODELS),
        "reference_model": "late_fusion", "seeds": list(SEEDS), "smoke": True,
        "scenarios": [{"name": n, "kind": k, "levels": lv} for n, (k, lv) in SCENARIOS.items()],
        "objective": {"metric": "MAE", "mode": "min", "summary": "mean over the validation grid"},
        "created": "2025-01-01T00:00:00",
    }
    (d / "study.json").write_text(json.dumps(study, indent=1))
    for m in ("fsrf", "senti_ifusion"):
        for s in SCENARIOS:
            sd = d / "search" / f"{m}__{s}"
            sd.mkdir(parents=True)
            imps = {"model.w_distill": 0.6, "train.lr": 0.3, "model.tau": 0.1} if m == "fsrf" else {}
            (sd / "best.json").write_text(json.dumps({
                "model": m, "scenario": s, "config_id": f"{m[:4]}-{s}-07",
                "params": {"model.w_distill": 0.3, "train.lr": 0.001, "model.tau": 2.0},
                "objective": {"metric": "MAE", "mode": "min", "value": MAE0[m] + 0.01},
                "importances": imps, "n_trials": 12}))
            (sd / "trials.csv").write_text("trial_id,status,objective,epochs,config/train.lr\n"
                                           "t0,TERMINATED,0.9,3,0.001\n")
    for m in MODELS:
        for s in SCENARIOS:
            for seed in SEEDS:
                if (m, s, seed) in ABSENT:
                    continue
                rd = d / "runs" / f"{m}__{s}__seed{seed}"
                rd.mkdir()
                if (m, s, seed) in UNFINISHED:
                    continue
                rows = []
                cid = "default" if m == "late_fusion" else f"{m[:4]}-{s}-07"
                for e, (_, levels) in SCENARIOS.items():
                    splits = ("test", "valid") if e == s else ("test",)
                    for split in splits:
                        for lv in levels:
                            if (m, s, seed, level_text(lv)) == NO_LEVEL and e == s and split == "test":
                                continue
                            for k in METRICS:
                                v = value(m, s, e, lv, seed, k)
                                if (m, s, seed, level_text(lv)) == NAN_CORR and k == "Corr" and e == s:
                                    v = float("nan")
                                rows.append((m, s, e, level_text(lv), seed, split, k, v, cid))
                pd.DataFrame(rows, columns=["model", "scenario", "eval_scenario", "level", "seed", "split",
                                            "metric", "value", "config_id"]).to_csv(rd / "eval.csv", index=False)
    # things the report must ignore
    (d / "ray_results").mkdir()
    (d / "ray_results" / "junk.txt").write_text("not a result")
    return d


def tree_digest(d: Path, skip: str | None = None) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not (skip and p.relative_to(d).parts[0] == skip)}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    d = make_study(tmp_path_factory.mktemp("storage"))
    before = tree_digest(d)
    build_report(d)
    # nothing outside DIR/report/ was written or changed
    assert tree_digest(d, skip="report") == before
    return d


def cell_mean(text: str) -> float:
    return float(text.split("±")[0].strip())


def md_table(md: str, title: str) -> tuple[list[str], dict[str, list[str]]]:
    """Parse the pipe table under the bold `title` line of report.md: (header, {row name: cells})."""
    lines = md.splitlines()
    i = lines.index(f"**{title}**")
    rows = []
    for ln in lines[i + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip().strip("*") for c in re.split(r"(?<!\\)\|", ln)[1:-1]])
    header, body = rows[0], rows[2:]
    return header, {r[0]: r[1:] for r in body}


# ---------------------------------------------------------------------------------------------

def test_results_csv_rows_and_columns(study):
    res = pd.read_csv(study / "report" / "results.csv", dtype={"level": str})
    assert list(res.columns) == ["model", "scenario", "eval_scenario", "level", "seed", "split", "metric",
                                 "value", "config_id", "knowledge"]
    assert set(res["knowledge"]) == {"unknown"}  # these eval.csv files predate the column: read as unknown
    n_levels = {s: len(lv) for s, (_, lv) in SCENARIOS.items()}
    test_rows = sum(n_levels.values()) * len(METRICS)  # every run is tested under every scenario
    expected = sum(test_rows + n_levels[s] * len(METRICS)  # + valid rows of its own scenario
                   for m in MODELS for s in SCENARIOS for seed in SEEDS
                   if (m, s, seed) not in ABSENT | UNFINISHED) - len(METRICS)  # minus NO_LEVEL's rows
    assert len(res) == expected == 5640
    # sorted: study order of models, then scenarios; levels in grid order
    assert list(res["model"].drop_duplicates()) == list(MODELS)
    first = res[(res.model == "fsrf") & (res.scenario == "intra") & (res.eval_scenario == "intra")]
    assert list(first["level"].drop_duplicates()) == [f"{x:g}" for x in INTRA]


def test_summary_hand_computed_cell(study):
    s = pd.read_csv(study / "report" / "summary.csv", dtype={"level": str})
    row = s[(s.model == "fsrf") & (s.scenario == "intra") & (s.eval_scenario == "intra") & (s.level == "0.3")
            & (s.split == "test") & (s.metric == "MAE")]
    assert len(row) == 1
    # 0.80 + 0.1 * 0.3 + {-0.01, 0, +0.01}: mean 0.83, population std sqrt(2/3) * 0.01
    assert row["mean"].item() == pytest.approx(0.83, abs=1e-12)
    assert row["std"].item() == pytest.approx(math.sqrt(2 / 3) * 0.01, rel=1e-9)
    assert row["n_seeds"].item() == 3
    # the NaN Corr is left out of its cell, and n_seeds says so
    nan_cell = s[(s.model == "senti_ifusion") & (s.scenario == "intra") & (s.eval_scenario == "intra")
                 & (s.level == "0.9") & (s.split == "test") & (s.metric == "Corr")]
    assert nan_cell["n_seeds"].item() == 2
    # valid rows are summarised too, separately
    assert set(s["split"]) == {"test", "valid"}


def test_lnln_level_and_overall_tables(study):
    md = (study / "report" / "report.md").read_text()
    header, rows = md_table(md, "intra: test MAE per level, mean ± std over seeds")
    assert header[1:] == [f"{x:.1f}" for x in INTRA] + ["Mean"]
    assert rows["fsrf"][INTRA.index(0.3)] == "0.830 ± 0.008"
    assert rows["fsrf"][-1] == "0.845 ± 0.008"  # mean over r = 0..0.9 of 0.80 + 0.1 r
    _, acc7 = md_table(md, "intra: test Acc-7 (%) per level, mean ± std over seeds")
    assert acc7["fsrf"][INTRA.index(0.3)] == "40.50 ± 0.82"  # 0.40 + 0.02 - 0.05 * 0.3, x100
    header, overall = md_table(md, "intra: overall = mean over the 10 levels 0.0…0.9, test")
    assert header == ["Model", "Acc-7", "Acc-5", "Acc-2 (Non0/Has0)", "F1 (Non0/Has0)", "MAE", "Corr"]
    # Non0 0.80 + 0.02 - 0.05 * 0.45, Has0 0.78 + 0.02 - 0.05 * 0.45
    assert overall["fsrf"][2] == "79.75/77.75 ± 0.82/0.82"
    assert overall["fsrf"][4] == "0.845 ± 0.008"
    # senti_ifusion has NaN Corr at 0.9 for one seed: its mean over levels rests on 2 seeds
    assert overall["senti_ifusion"][5].endswith("(n=2)")
    # the absent and unfinished inter runs: those cells rest on 2 seeds
    _, inter = md_table(md, "inter: test MAE per level, mean ± std over seeds")
    assert inter["senti_ifusion"][0].endswith("(n=2)") and inter["fsrf"][0].endswith("(n=2)")
    assert not inter["late_fusion"][0].endswith(")")


def test_subset_table_avg_is_mean_of_six(study):
    md = (study / "report" / "report.md").read_text()
    header, rows = md_table(md, "subset: test F1 (Non0) (%) per available-modality subset")
    assert header == ["Model", "{l}", "{a}", "{v}", "{l,a}", "{l,v}", "{a,v}", "Avg", "{l,a,v}"]
    for m in MODELS:
        six = [cell_mean(c) for c in rows[m][:6]]
        assert cell_mean(rows[m][6]) == pytest.approx(np.mean(six), abs=0.006)  # rounding of the cells
    # by hand: 0.82 - 0.05 * mean(stand-in r of the six) = 0.82 - 0.05 * 2.75 / 6
    assert rows["fsrf"][6] == f"{100 * (0.82 - 0.05 * 2.75 / 6):.2f} ± 0.82"
    assert rows["fsrf"][7] == "82.00 ± 0.82"
    _, mae = md_table(md, "subset: test MAE per available-modality subset")
    assert cell_mean(mae["late_fusion"][6]) == pytest.approx(0.90 + 0.5 * 2.75 / 6, abs=5e-4)


def test_effective_robustness_sign_and_value(study):
    rob = pd.read_csv(study / "report" / "robustness.csv")
    r = rob[(rob.scenario == "intra") & (rob.metric == "MAE")].set_index("model")
    # lower-is-better, sign flipped: -sum_i[(slope_m - slope_ref) * r_i] = (0.5 - slope_m) * 4.5
    assert r.loc["fsrf", "effective_robustness"] == pytest.approx(0.4 * 4.5, abs=1e-9)
    assert r.loc["senti_ifusion", "effective_robustness"] == pytest.approx(-0.1 * 4.5, abs=1e-9)
    assert r.loc["late_fusion", "effective_robustness"] == pytest.approx(0.0, abs=1e-12)
    acc = rob[(rob.scenario == "intra") & (rob.metric == "Mult_acc_7")].set_index("model")
    assert acc.loc["fsrf", "effective_robustness"] > 0 > acc.loc["senti_ifusion", "effective_robustness"]
    # AUILC over 0..0.9: 0.9 * 0.80 + 0.1 * 0.9**2 / 2, mean over seeds
    assert r.loc["fsrf", "auilc"] == pytest.approx(0.9 * 0.80 + 0.1 * 0.81 / 2, abs=1e-9)
    assert r.loc["fsrf", "mean_over_levels"] == pytest.approx(0.845, abs=1e-9)
    assert "subset" not in set(rob.scenario)  # no numeric levels, no curve summaries
    md = (study / "report" / "report.md").read_text()
    assert "intra, test MAE, fsrf vs late_fusion: mean over levels difference" in md  # a headline row
    comp = pd.read_csv(study / "report" / "comparisons.csv").set_index(["model", "scenario", "summary", "metric"])
    # the same number as robustness.csv (mean of per-seed ER = ER of the seed-mean curves, all seeds complete)
    assert comp.loc[("fsrf", "intra", "effective robustness", "MAE"), "diff"] == pytest.approx(1.8, abs=1e-9)
    er = comp.loc[("senti_ifusion", "intra", "effective robustness", "MAE")]
    assert er["family"] == "exploratory" and er["diff"] < 0
    assert er["verdict"] == ("worse" if er["p_adjusted"] <= 0.05 and er["p_equivalence_adjusted"] > 0.05 else
                             "equivalent" if er["p_equivalence_adjusted"] <= 0.05 else "inconclusive")


def test_cross_scenario_matrix(study):
    md = (study / "report" / "report.md").read_text()
    header, rows = md_table(md, "fsrf: test MAE, trained for (rows) × evaluated under (columns)")
    assert header[1:] == list(SCENARIOS)
    assert rows["intra"][0] == "0.845 ± 0.008"  # diagonal
    assert rows["intra"][1] == "0.880 ± 0.008"  # 0.80 + 0.1 * mean(0, .2, .4, .6) + 0.05
    assert re.search(r"\| intra +\| \*\*0\.845 ± 0\.008\*\* +\| 0\.880", md)  # diagonal highlighted
    html = (study / "report" / "report.html").read_text()
    assert '<td class="hl">0.845 ± 0.008</td>' in html


def test_best_config_and_importances(study):
    md = (study / "report" / "report.md").read_text()
    header, rows = md_table(md, "fsrf: best configuration per scenario")
    assert header[:4] == ["Scenario", "Config", "Objective MAE (min)", "Trials"]
    assert rows["intra"][:3] == ["fsrf-intra-07", "0.810", "12"]
    _, imp = md_table(md, "fsrf: Optuna parameter importances")
    assert list(imp) == ["model.w_distill", "train.lr", "model.tau"]
    assert "senti_ifusion: Optuna parameter importances" not in md  # none recorded
    assert "Run with their default configuration (no search): late_fusion." in md
    assert (study / "report" / "plots" / "importances__fsrf.png").is_file()
    assert not (study / "report" / "plots" / "importances__senti_ifusion.png").exists()


def test_html_self_contained_and_pngs_are_images(study):
    rep = study / "report"
    html = (rep / "report.html").read_text()
    assert 'src="http' not in html and "<link" not in html and "<script" not in html
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    pngs = sorted((rep / "plots").glob("*.png"))
    # curves x2, subset bars, 3 cross heatmaps, importances of fsrf, comparisons
    assert {p.name for p in pngs} == {"curves__intra.png", "curves__inter.png", "subset__subset.png",
                                      "cross__fsrf.png", "cross__senti_ifusion.png", "cross__late_fusion.png",
                                      "importances__fsrf.png", "comparisons.png", "tuning.png"}
    assert len(imgs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in imgs)
    md = (rep / "report.md").read_text()
    for p in pngs:
        assert f"(plots/{p.name})" in md
        a = mpimg.imread(p)
        assert a.shape[0] >= 250 and a.shape[1] >= 400
        assert a[..., :3].std() > 0.05  # not a blank canvas


def test_missing_runs_are_reported(study):
    md = (study / "report" / "report.md").read_text()
    html = (study / "report" / "report.html").read_text()
    for text in ("run senti_ifusion__inter__seed1113: no results (no run folder)",
                 "run fsrf__inter__seed1112: no results (runs/fsrf__inter__seed1112/ has no eval.csv"):
        assert text in md and text in html
    assert "2 of 27 expected runs have no results" in md
    assert "run late_fusion__subset__seed1111: no test rows at level(s) lav" in md
    _, f1 = md_table(md, "subset: test F1 (Non0) (%) per available-modality subset")
    assert f1["late_fusion"][-1] == "80.50 ± 0.50 (n=2)"  # seeds 1112, 1113
    assert not f1["late_fusion"][-2].endswith(")")  # all seeds at the other levels: no count shown
    assert "Smoke run: yes" in md


def test_rebuild_is_idempotent_and_leaves_no_temp(study):
    first = tree_digest(study / "report")
    out = build_report(study)
    assert out == study / "report"
    assert tree_digest(study / "report") == first
    assert sorted(p.name for p in study.iterdir()) == ["ray_results", "report", "runs", "search", "study.json"]


def test_failed_build_keeps_previous_report(tmp_path, monkeypatch):
    d = make_study(tmp_path)
    (d / "report").mkdir()
    (d / "report" / "report.md").write_text("previous good report")
    import raymsa.report.build as build

    def boom(*a, **k):
        raise RuntimeError("crash while plotting")

    monkeypatch.setattr(build, "curves", boom)  # the first figure
    with pytest.raises(RuntimeError, match="crash while plotting"):
        build_report(d)
    assert [p.name for p in (d / "report").iterdir()] == ["report.md"]
    assert (d / "report" / "report.md").read_text() == "previous good report"
    assert not [p for p in d.iterdir() if p.name.startswith(".report")]


def test_cli_prints_path_and_summary(study, capsys):
    assert main([str(study)]) == 0
    out = capsys.readouterr().out
    assert f"report: {study / 'report' / 'report.html'}" in out
    assert "| fsrf " in out and "0.845 ± 0.008" in out  # fsrf, intra, MAE mean over levels


def test_bad_dirs_error_cleanly(tmp_path):
    with pytest.raises(ReportError, match=re.escape(f"{tmp_path / 'nope'}: not a folder")):
        build_report(tmp_path / "nope")
    with pytest.raises(ReportError, match="not a study folder \\(no study.json\\)"):
        build_report(tmp_path)
    d = make_study(tmp_path, "empty")
    for p in sorted((d / "runs").rglob("eval.csv")):
        p.unlink()
    with pytest.raises(ReportError, match=re.escape(f"{d}: no results")):
        build_report(d)
    assert not (d / "report").exists()
    # the CLI: one line on stderr naming the path, exit code 2, no traceback
    r = subprocess.run([sys.executable, "-m", "raymsa.report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {tmp_path}: not a study folder (no study.json)"
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("mutate, message", [
    (lambda df: df.drop(columns="eval_scenario"), "missing column 'eval_scenario'"),
    (lambda df: df.assign(value=df["value"].astype(object).where(df.index != 5, "oops")),
     "column 'value' has a non-numeric value 'oops' on line 7"),
    (lambda df: df.assign(seed=df["seed"].astype(object).where(df.index != 0, "x")),
     "column 'seed' has a non-integer value 'x' on line 2"),
])
def test_malformed_eval_csv_names_file_and_column(tmp_path, mutate, message):
    d = make_study(tmp_path)
    f = d / "runs" / "fsrf__intra__seed1111" / "eval.csv"
    mutate(pd.read_csv(f, dtype={"level": str})).to_csv(f, index=False)
    with pytest.raises(ReportError) as e:
        load_study(d)
    assert str(e.value).startswith(f"{f}: ") and message in str(e.value)


def test_malformed_study_json_names_key(tmp_path):
    d = make_study(tmp_path)
    st = json.loads((d / "study.json").read_text())
    del st["scenarios"][1]["levels"]
    (d / "study.json").write_text(json.dumps(st))
    with pytest.raises(ReportError, match=re.escape(f"{d / 'study.json'}: missing key 'scenarios[1].levels'")):
        load_study(d)


def test_paired_difference_uses_shared_seeds_only():
    import pandas as pd

    from raymsa.report.stats import paired_difference

    # seeds 1 and 2 shared; seed 3 only in the model's grid and must be ignored
    model = pd.DataFrame({"0": [1.0, 2.0, 9.0], "0.5": [1.0, 4.0, 9.0]}, index=[1, 2, 3])
    ref = pd.DataFrame({"0": [1.5, 2.0], "0.5": [1.5, 2.0]}, index=[1, 2])
    d, lower = paired_difference(model, ref)
    # per seed: (1 - 1.5) = -0.5 and (3 - 2) = +1.0
    assert d.n == 2 and lower == 1
    assert d.mean == pytest.approx(0.25) and d.std == pytest.approx(0.75)

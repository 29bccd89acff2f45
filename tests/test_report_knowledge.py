"""The report's knowledge sections (raymsa.report.knowledge) on a small fabricated study whose
values are known, so every gap, error and share can be checked exactly; and older eval.csv files
without the knowledge column read as 'unknown'."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from raymsa.report.build import build_report
from raymsa.report.knowledge import arm_pairs, equity_frame, gap_frame, gap_intervals, gini, knowledge_sections
from raymsa.report.load import load_study

LEVELS = [0.0, 0.5]
SCEN = {"intra": ("intra", LEVELS, "unknown"), "intra_known": ("intra", LEVELS, "known"),
        "subset": ("subset", ["la", "lv", "av", "lav"], "unknown")}
SEEDS = (1, 2)
SUBSET_MAE = {"la": 1.3, "lv": 1.1, "av": 1.9, "lav": 1.0}  # without v +0.3, without a +0.1, without l +0.9


def mae(model: str, scen: str, level, seed: int) -> float:
    if scen == "subset":
        return SUBSET_MAE[level] + 0.01 * seed
    base = {"fsrf": 1.0, "late_fusion": 1.2}[model] + 0.4 * level + 0.01 * seed
    return base - (0.1 * level if scen == "intra_known" else 0.0)  # knowing the masks helps at 0.5 only


def make(root: Path, with_knowledge_column: bool = True) -> Path:
    d = root / "s"
    (d / "runs").mkdir(parents=True)
    (d / "study.json").write_text(json.dumps({
        "name": "s", "dataset": "mosi", "models": ["fsrf"], "reference_model": "late_fusion", "seeds": list(SEEDS),
        "scenarios": [{"name": n, "kind": k, "levels": lv, **({"knowledge": kn} if with_knowledge_column else {})}
                      for n, (k, lv, kn) in SCEN.items()],
        "objective": {"metric": "MAE", "mode": "min"}}))
    for model in ("fsrf", "late_fusion"):
        for s in SCEN:
            for seed in SEEDS:
                rows = []
                for e, (_, levels, kn) in SCEN.items():
                    for lv in levels:
                        lab = lv if isinstance(lv, str) else f"{lv:g}"
                        rows.append((model, s, e, lab, seed, "test", "MAE", mae(model, e, lv, seed), "c", kn))
                        if model == "fsrf" and e == s and e != "subset":
                            for i, m in enumerate(("text", "audio", "vision")):
                                rows.append((model, s, e, lab, seed, "test", f"diag/integrity_mae/{m}",
                                             0.1 * (i + 1), "c", kn))
                                rows.append((model, s, e, lab, seed, "test", f"diag/integrity_bias/{m}",
                                             0.05, "c", kn))
                                rows.append((model, s, e, lab, seed, "test", f"diag/dominant_share/{m}",
                                             [0.5, 0.3, 0.2][i], "c", kn))
                                rows.append((model, s, e, lab, seed, "test", f"diag/cosine/homogeneous/{m}",
                                             0.2, "c", kn))
                                rows.append((model, s, e, lab, seed, "test", f"diag/label_r2/noise/{m}",
                                             [0.04, 0.002, 0.001][i], "c", kn))
                cols = ["model", "scenario", "eval_scenario", "level", "seed", "split", "metric", "value",
                        "config_id", "knowledge"]
                df = pd.DataFrame(rows, columns=cols)
                if not with_knowledge_column:
                    df = df.drop(columns="knowledge")
                rd = d / "runs" / f"{model}__{s}__seed{seed}"
                rd.mkdir()
                df.to_csv(rd / "eval.csv", index=False)
    return d


def test_gap_per_level_and_equity(tmp_path):
    res = load_study(make(tmp_path))
    assert [(u.name, k.name) for u, k in arm_pairs(res)] == [("intra", "intra_known")]
    gaps = gap_frame(res)
    g = gaps.set_index(["model", "level"])["gap"]
    assert g[("fsrf", "0")] == pytest.approx(0.0) and g[("fsrf", "0.5")] == pytest.approx(-0.05)
    assert g[("late_fusion", "0.5")] == pytest.approx(-0.05)
    # the mean-over-levels gap with its paired interval: -0.025 in every seed, so the interval is
    # that point and the verdict "better" (ignoring ref_scenario would give 0 and no verdict)
    by = {r["model"]: r for r in gap_intervals(res)}
    assert by["fsrf"]["diff"] == pytest.approx(-0.025) and by["fsrf"]["verdict"] == "better"
    assert (by["fsrf"]["ci_low"], by["fsrf"]["ci_high"]) == pytest.approx((-0.025, -0.025))
    assert by["fsrf"]["scenario"] == "intra_known" and by["fsrf"]["n_seeds"] == len(SEEDS)
    eq = equity_frame(res)
    row = eq[(eq["model"] == "fsrf") & (eq["scenario"] == "intra")].iloc[0]
    assert (row.delta_text, row.delta_audio, row.delta_vision) == pytest.approx((0.9, 0.1, 0.3))
    assert row.equity == pytest.approx(1 - gini([0.9, 0.1, 0.3]))
    assert gini([1, 1, 1]) == 0 and gini([0, 0, 3]) == pytest.approx(2 / 3)
    titles = [s.title for s in knowledge_sections(res)]
    assert titles == ["What knowing the masks is worth", "Integrity estimation", "Dominant modality",
                      "Collapse of factorized parts", "Label content of the noise parts", "Modality equity"]
    # diag rows are not flagged as unknown metrics
    assert not any("diag/" in n for n in res.notes)


def test_report_renders_the_sections(tmp_path):
    d = make(tmp_path)
    build_report(d)
    md = (d / "report" / "report.md").read_text()
    assert "intra_known − intra: test MAE" in md and "-0.050" in md
    assert re.search(r"\| fsrf +\| \+0\.000 +\| -0\.050 +\| -0\.025 +\| \[-0\.025, -0\.025\] +\| known better", md)
    assert "fsrf under intra: integrity error (bias)" in md and "0.300 (+0.050)" in md
    assert "fsrf: dominant-modality shares" in md
    assert "fsrf: cosine between samples" in md and re.search(r"\| homogeneous/text +\| 0\.200", md)
    assert "fsrf: label R² of the noise read-out" in md and re.search(r"\| noise/text +\| 0\.040", md)


def test_older_files_read_as_unknown(tmp_path):
    res = load_study(make(tmp_path, with_knowledge_column=False))
    assert set(res.results["knowledge"]) == {"unknown"}
    assert all(s.knowledge == "unknown" for s in res.study.scenarios)
    assert arm_pairs(res) == []

"""The ablation table (raymsa.report.ablation) on a fabricated study whose values are known: a
variant that loses exactly 0.1 MAE in every seed must read Δ +0.100 with a point interval and
'worse'; one that differs by ±0.01 around the full model must read 'inconclusive';
a study without report.ablation_of gets no table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from raymsa.config import ConfigError, parse
from raymsa.report.ablation import ablation_of, ablation_sections
from raymsa.report.build import build_report
from raymsa.report.load import load_study
from raymsa.study.config import StudyConfig

LEVELS = [0.0, 0.5]
RECON_LOSS, RECON_JITTER = 0.02, 0.004
SCEN = ("intra", "inter")
SEEDS = (1, 2, 3)
MODELS = {"fsrf": {}, "fsrf_no_distill": {"use_distill": False}, "fsrf_no_align": {"use_align": False},
          "fsrf_no_recon": {"use_recon": False}}


def mae(model: str, scen: str, level: float, seed: int) -> float:
    full = 1.0 + 0.4 * level + 0.01 * seed + (0.05 if scen == "inter" else 0.0)
    if model == "fsrf_no_distill":
        return full + 0.1
    if model == "fsrf_no_align":
        return full + (0.01 if seed % 2 else -0.01)
    if model == "fsrf_no_recon":  # a small loss, seed to seed not quite the same
        return full + RECON_LOSS + RECON_JITTER * (seed - 2)
    return full


def make(root: Path, ablation: bool = True) -> Path:
    d = root / "abl"
    (d / "runs").mkdir(parents=True)
    config = {"models": {k: {"model": "fsrf", "config": v} for k, v in MODELS.items()},
              "report": {"ablation_of": "fsrf" if ablation else None}}
    (d / "study.json").write_text(json.dumps({
        "name": "abl", "dataset": "mosi", "models": list(MODELS), "reference_model": None, "seeds": list(SEEDS),
        "scenarios": [{"name": s, "kind": s, "levels": LEVELS, "knowledge": "unknown"} for s in SCEN],
        "objective": {"metric": "MAE", "mode": "min"}, "config": config}))
    cols = ["model", "scenario", "eval_scenario", "level", "seed", "split", "metric", "value", "config_id", "knowledge"]
    for model in MODELS:
        for s in SCEN:
            for seed in SEEDS:
                rows = [(model, s, s, f"{lv:g}", seed, "test", "MAE", mae(model, s, lv, seed), "c", "unknown")
                        for lv in LEVELS]
                rd = d / "runs" / f"{model}__{s}__seed{seed}"
                rd.mkdir()
                pd.DataFrame(rows, columns=cols).to_csv(rd / "eval.csv", index=False)
    return d


def test_ablation_rows_against_the_full_model(tmp_path):
    res = load_study(make(tmp_path))
    assert ablation_of(res) == "fsrf"
    (sec,) = ablation_sections(res, None)
    table = sec.blocks[-1]
    rows = {r[0]: r for r in table.rows}
    assert list(rows) == ["fsrf", "fsrf_no_distill", "fsrf_no_align", "fsrf_no_recon"]
    col = {c: i for i, c in enumerate(table.columns)}
    # the full model: mean over levels and seeds of 1 + 0.4 lv + 0.01 seed = 1.1 + 0.02 under intra
    assert rows["fsrf"][col["intra: MAE"]] == "1.120"
    assert rows["fsrf"][col["inter: MAE"]] == "1.170"
    nd = rows["fsrf_no_distill"]
    assert nd[col["Switched off"]] == "use_distill: false"
    assert nd[col["intra: MAE"]] == "1.220"
    assert nd[col["intra: Δ vs fsrf [95% CI]"]] == "+0.100 [+0.100, +0.100] (n=3)"
    assert nd[col["intra: verdict"]] == "worse (Holm p <0.001)" == nd[col["inter: verdict"]]
    na = rows["fsrf_no_align"]
    assert na[col["intra: verdict"]].startswith("inconclusive (Holm p ")
    assert na[col["intra: Δ vs fsrf [95% CI]"]].startswith("+0.003 [")  # (0.01 - 0.01 + 0.01) / 3


def test_ablation_verdicts_are_holm_adjusted_over_the_table(tmp_path):
    """fsrf_no_recon loses 0.02 +- 0.004 over 3 seeds: 'worse' on its own at 5 % (p 0.013) but not
    after Holm over the table's 6 comparisons (3 variants x 2 scenarios)."""
    from statsmodels.stats.multitest import multipletests

    from raymsa.report import verdicts as V
    from raymsa.report.compare import compare_one, summaries
    from raymsa.report.stats import Cube

    res = load_study(make(tmp_path))
    cube = Cube(res)
    (sec,) = ablation_sections(res, cube)
    table = sec.blocks[-1]
    col = {c: i for i, c in enumerate(table.columns)}
    cells, p = [], []
    for row in table.rows[1:]:
        for sc in res.study.scenarios:
            r = compare_one(res, cube, row[0], "fsrf", sc, summaries(sc)[0], "MAE")
            p.append(V.p_difference(r["diff"], r["se_test"], r["df"]))
            cells.append((row[0], r["verdict"], row[col[f"{sc.name}: verdict"]]))
    holm = multipletests(p, method="holm")[1]
    for (variant, alone, cell), ph in zip(cells, holm):
        assert cell.endswith(f"(Holm p {ph:.3f})") or (ph < 0.001 and cell.endswith("(Holm p <0.001)")), cell
    recon = [(alone, cell) for v, alone, cell in cells if v == "fsrf_no_recon"]
    assert recon and all(alone == "worse" and cell.startswith("inconclusive") for alone, cell in recon), recon
    assert "Holm-adjusted over this table's 6 comparisons" in sec.blocks[0]


def test_the_report_renders_the_table_only_for_an_ablation(tmp_path):
    d = make(tmp_path)
    build_report(d)
    md = (d / "report" / "report.md").read_text()
    assert "Ablation of fsrf" in md and "use_distill: false" in md
    other = make(tmp_path / "plain", ablation=False)
    assert ablation_sections(load_study(other), None) == []


def test_ablation_of_must_name_a_model():
    raw = {"name": "x", "models": {"fsrf": {}}, "scenarios": [{"kind": "intra"}], "report": {"ablation_of": "nope"}}
    with pytest.raises(ConfigError, match="ablation_of"):
        parse(StudyConfig, raw, "x.yaml")

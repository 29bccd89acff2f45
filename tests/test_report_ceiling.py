"""The Bayes ceiling in the report (raymsa.report.ceiling): rows, curve, gaps, and its absence."""

from __future__ import annotations

import pandas as pd
import pytest
from test_report import INTER, INTRA, MAE0, SEEDS, SHIFT, SLOPE, SUBSETS, SUBSET_R, level_text, make_study, md_table

from raymsa.report import ReportError, build_report

CEIL_MAE0, CEIL_SLOPE = 0.5, 0.3


def _ceiling_csv(d) -> None:
    rows = []
    for name, levels in (("intra", INTRA), ("inter", INTER), ("subset", SUBSETS)):
        for seed in SEEDS:
            for lv in levels:
                r = SUBSET_R[lv] if isinstance(lv, str) else lv
                rows.append((name, level_text(lv), seed, "MAE", CEIL_MAE0 + CEIL_SLOPE * r + SHIFT[seed]))
                rows.append((name, level_text(lv), seed, "Mult_acc_7", 0.5 - 0.1 * r))
                rows.append((name, level_text(lv), seed, "Corr", 0.9 - 0.2 * r))
    pd.DataFrame(rows, columns=["scenario", "level", "seed", "metric", "value"]).to_csv(d / "ceiling.csv", index=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = make_study(tmp_path_factory.mktemp("ceil"))
    _ceiling_csv(d)
    build_report(d)
    return d


def test_level_table_has_the_ceiling_row(study):
    md = (study / "report" / "report.md").read_text()
    header, rows = md_table(md, "intra: test MAE per level, mean ± std over seeds")
    cells = rows["Bayes ceiling"]
    assert float(cells[0].split("±")[0]) == pytest.approx(CEIL_MAE0, abs=1e-3)
    assert float(cells[-1].split("±")[0]) == pytest.approx(CEIL_MAE0 + CEIL_SLOPE * 0.45, abs=1e-3)
    _, subset_rows = md_table(md, "subset: test MAE per available-modality subset")
    assert "Bayes ceiling" in subset_rows
    assert "Dotted black: the Bayes ceiling" in md


def test_gap_to_the_ceiling_and_share_of_the_reference_gap(study):
    gaps = pd.read_csv(study / "report" / "ceiling_gaps.csv")
    g = gaps[(gaps["scenario"] == "intra") & (gaps["metric"] == "MAE")].set_index("model")
    mean_r = sum(INTRA) / len(INTRA)
    model = {m: MAE0[m] + SLOPE[m] * mean_r for m in MAE0}
    ceil = CEIL_MAE0 + CEIL_SLOPE * mean_r
    for m in MAE0:
        assert g.loc[m, "gap"] == pytest.approx(model[m] - ceil, abs=1e-9)  # positive: worse than best
        assert g.loc[m, "gap_std"] == pytest.approx(0.0, abs=1e-9)  # seed shifts are shared: paired
    share = (model["late_fusion"] - model["fsrf"]) / (model["late_fusion"] - ceil)
    assert g.loc["fsrf", "share_of_reference_gap_closed"] == pytest.approx(share, abs=1e-9)
    md = (study / "report" / "report.md").read_text()
    _, rows = md_table(md, "intra: distance to the Bayes ceiling, mean over levels (0.0…0.9), test")
    assert "Distance to the Bayes ceiling" in md and rows["MAE"][0] in ("fsrf", "senti_ifusion", "late_fusion")
    assert f"{100 * share:.0f} %" in md


def test_study_without_ceiling_has_no_ceiling_section(tmp_path):
    d = make_study(tmp_path)
    build_report(d)
    md = (d / "report" / "report.md").read_text()
    assert "Bayes ceiling" not in md and not (d / "report" / "ceiling_gaps.csv").exists()


def test_malformed_ceiling_names_the_file_and_column(tmp_path):
    d = make_study(tmp_path)
    (d / "ceiling.csv").write_text("scenario,level,seed,metric\nintra,0,1111,MAE\n")
    with pytest.raises(ReportError, match=r"ceiling\.csv: missing column\(s\) value"):
        build_report(d)
    (d / "ceiling.csv").write_text("scenario,level,seed,metric,value\nintra,0,1111,MAE,high\n")
    with pytest.raises(ReportError, match=r"ceiling\.csv: row 2: column 'value'"):
        build_report(d)

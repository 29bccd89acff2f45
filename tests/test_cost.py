"""timing.csv: appended without losing rows, and the report's cost section shares each phase's wall
out over its parts."""

from __future__ import annotations

import types

import pandas as pd
import pytest

from raymsa.report.cost import cost_frame, cost_section, load_timing
from raymsa.report.render import Figure, Table, to_markdown
from raymsa.study.runner import TIMING_COLUMNS, append_timing


def _rows(phase, trials, wall, slots):
    rows = [{"phase": phase, "trial": t, "part": p, "seconds": s} for t, parts in trials.items() for p, s in parts.items()]
    return rows + [{"phase": phase, "trial": "", "part": "wall", "seconds": wall},
                   {"phase": phase, "trial": "", "part": "slot_seconds", "seconds": wall * slots}]


def test_append_keeps_earlier_rows_and_the_section_adds_up(tmp_path):
    append_timing(tmp_path, [{"phase": "study", "trial": "", "part": "ray_start", "seconds": 5.0}])
    # two slots for 10 s = 20 slot-seconds: 16 s in trials, 4 s outside any
    append_timing(tmp_path, _rows("search__fsrf__intra", {"a": {"trial_startup": 1, "train": 6, "valid": 1},
                                                         "b": {"trial_startup": 1, "train": 6, "valid": 1}}, 10.0, 2))
    append_timing(tmp_path, _rows("retrain", {"c": {"train": 3, "final_eval": 2, "diagnostics": 1}}, 6.0, 1))
    df = load_timing(tmp_path / "timing.csv")
    assert list(df.columns) == list(TIMING_COLUMNS) and len(df) == 1 + 8 + 5
    frame = cost_frame(df).set_index("phase")
    search = frame.loc["search__fsrf__intra"]
    assert search["wall"] == 10.0
    assert search["train"] == pytest.approx(12 / 20 * 10) and search["other"] == pytest.approx(4 / 20 * 10)
    parts = [c for c in frame.columns if c != "wall"]
    assert frame[parts].sum(axis=1).to_dict() == pytest.approx(frame["wall"].to_dict())
    (tmp_path / "plots").mkdir()
    sec = cost_section(types.SimpleNamespace(dir=tmp_path), tmp_path / "plots")
    table = next(b for b in sec.blocks if isinstance(b, Table))
    total = next(r for r in table.rows if r[0] == "total")
    assert total[1] == "21"  # 5 + 10 + 6
    assert any(isinstance(b, Figure) for b in sec.blocks) and (tmp_path / "plots" / "cost.png").stat().st_size > 0
    assert "training steps" in to_markdown("t", [sec])


def test_no_timing_no_section_and_a_bad_file_is_named(tmp_path):
    assert cost_section(types.SimpleNamespace(dir=tmp_path), tmp_path) is None
    (tmp_path / "timing.csv").write_text("phase,part\nx,y\n")
    sec = cost_section(types.SimpleNamespace(dir=tmp_path), tmp_path)
    assert any("timing.csv" in b and "seconds" in b for b in sec.blocks if isinstance(b, str))
    assert pd.read_csv(tmp_path / "timing.csv").shape == (1, 2)  # the report never rewrites it

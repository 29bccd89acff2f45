"""python -m raymsa.report plan: on the lifecycle study, every headline row with its cost per seed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.ray
def test_plan_prints_every_headline_row_with_its_cost(lifecycle):
    out = lifecycle["out"]
    assert lifecycle["rc4"] == 0, lifecycle["log4"][-4000:]
    # each run records the seconds its training loop took (what one more seed of it costs)
    secs = [json.loads(p.read_text())["seconds"] for p in (out / "runs").glob("*/run.json")]
    assert secs and all(isinstance(s, float) and s > 0 for s in secs)
    done = subprocess.run([sys.executable, "-m", "raymsa.report", "plan", str(out), "--margin", "0.02"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| fsrf ")]
    pairs = {tuple(c.strip() for c in r.strip("|").split("|")[1:3]) for r in rows}
    assert pairs == {("fsrf_default", "intra"), ("late_fusion", "intra"),
                     ("fsrf_default", "subset"), ("late_fusion", "subset")}, done.stdout
    header = next(line for line in done.stdout.splitlines() if line.startswith("| Model"))
    col = [c.strip() for c in header.strip("|").split("|")].index("Run-min per seed")
    per_seed = [float(r.strip("|").split("|")[col]) for r in rows]  # 'unknown' would fail here
    assert all(m > 0 for m in per_seed)
    assert "cost: the runs' run.json" in done.stdout

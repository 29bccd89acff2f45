"""Training ends on a plateau: the cap is a cap, the LR drops when validation stalls, and each run
records how it ended (run.json) for the report."""

from __future__ import annotations

import json
import math

import pytest

from raymsa.missing import ScenarioConfig
from raymsa.train.config import parse_train_config
from raymsa.train.loop import FinalEval, run
from raymsa.train.session import LocalSession


def tiny(epochs=6, **train):
    return parse_train_config({
        "model": {"name": "late_fusion", "variant": "tiny"},
        "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
        "train": {"epochs": epochs, "batch_size": 32, "eval_batch_size": 64, "lr": 2e-3, **train},
    }, "test")


def test_patience_with_a_huge_min_delta_stops_after_patience_epochs(tiny_data, tmp_path):
    """No epoch can beat the first by 10 MAE: every later judged epoch is a bad one, so patience 3
    ends the run after epoch 4 of a cap of 6, stopped by the plateau, tested with its best epoch;
    the LR dropped after the 2nd bad epoch (lr_patience 1), so the last epoch trained at half the LR."""
    fe = FinalEval([ScenarioConfig(kind="intra", levels=[0.0, 0.5])], tmp_path / "eval.csv",
                   {"model": "late_fusion", "scenario": "intra", "seed": 1, "config_id": "default"})
    res = run(tiny(patience=3, min_delta=10.0, warmup_fraction=0.0), tiny_data,
              LocalSession(tmp_path / "r", resume=False), final_eval=fe, verbose=False)
    assert res.epochs_run == 4 and res.stop_reason == "plateau"
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] == pytest.approx(2e-3) and min(lrs) == pytest.approx(1e-3)
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["epochs_run"] == 4 and rec["cap"] == 6 and rec["stop_reason"] == "plateau"
    objectives = [h["objective"] for h in rec["history"]]
    assert rec["best_epoch"] == objectives.index(min(objectives)) + 1
    assert (tmp_path / "eval.csv").exists()


def test_without_patience_the_cap_ends_the_run(tiny_data, tmp_path):
    res = run(tiny(epochs=3), tiny_data, LocalSession(tmp_path, resume=False), verbose=False)
    assert res.epochs_run == 3 and res.stop_reason == "cap"


def test_plateau_schedule_keeps_the_lr_until_validation_stalls(tiny_data, tmp_path):
    """After warm-up the LR is the configured one (no decay towards the cap); with min_delta so large
    that nothing counts as an improvement and lr_patience 0, each judged epoch after the first
    halves it. Cosine instead decays it over the cap, whatever validation does."""
    res = run(tiny(epochs=4, warmup_fraction=0.0, min_delta=10.0, lr_patience=0),
              tiny_data, LocalSession(tmp_path / "p", resume=False), verbose=False)
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] == pytest.approx(2e-3)
    assert lrs[1:] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    flat = run(tiny(epochs=4, warmup_fraction=0.0), tiny_data, LocalSession(tmp_path / "f", resume=False),
               verbose=False)
    improving = [h["objective"] for h in flat.history]
    # where validation kept improving by any amount (min_delta 0), the LR never dropped
    first_stall = next((i for i in range(1, 4) if not improving[i] < min(improving[:i])), 4)
    assert [h["lr"] for h in flat.history][:first_stall] == pytest.approx([2e-3] * first_stall)
    cos = run(tiny(epochs=4, warmup_fraction=0.0, schedule="cosine"), tiny_data,
              LocalSession(tmp_path / "c", resume=False), verbose=False)
    clr = [h["lr"] for h in cos.history]
    assert all(b < a for a, b in zip(clr, clr[1:])) and clr[-1] < 1e-4
    assert all(math.isfinite(v) for v in lrs + clr)


def test_min_delta_and_schedule_are_validated():
    from raymsa.config import ConfigError

    with pytest.raises(ConfigError, match="min_delta"):
        tiny(min_delta=-1)
    with pytest.raises(ConfigError, match="schedule"):
        tiny(schedule="linear")


@pytest.mark.parametrize("train", [
    {"patience": 2},                      # lr_patience 1: stops on the epoch the LR drops
    {"patience": 1, "lr_patience": 0},
])
def test_plateau_patience_that_cannot_outlast_the_lr_drop_is_refused(train):
    from raymsa.config import ConfigError

    with pytest.raises(ConfigError, match=r"test: train: .*patience: \d+ stops the run no later than .*first LR drop"):
        tiny(**train)


@pytest.mark.parametrize("train", [
    {"patience": 3},
    {"patience": 2, "lr_patience": 0},
    {"patience": 2, "schedule": "cosine"},  # no plateau LR to wait for
    {"patience": None},
])
def test_plateau_patience_that_outlasts_the_lr_drop_is_accepted(train):
    cfg = tiny(**train).train
    assert cfg.patience == train["patience"] and cfg.lr_patience == train.get("lr_patience", 1)

"""The training loop without Ray: selection on validation, exact resume, loud failures, the CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from raymsa.config import ConfigError
from raymsa.models import Stage
from raymsa.train.batches import shard_indices
from raymsa.train.config import load_train_config, parse_train_config
from raymsa.train.loop import NonFiniteLossError, run, stage_for_epoch
from raymsa.train.session import LocalSession


def tiny_config(model="fsrf", epochs=3, **train):
    return parse_train_config({
        "model": {"name": model, "variant": "tiny"},
        "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
        "train": {"epochs": epochs, "batch_size": 32, "eval_batch_size": 64, "lr": 2e-3, **train},
    }, "test")


def test_run_selects_best_epoch_on_validation(tiny_data, tmp_path):
    cfg = tiny_config(epochs=4)
    res = run(cfg, tiny_data, LocalSession(tmp_path, resume=False), verbose=False)
    objectives = [h["objective"] for h in res.history]
    assert len(objectives) == 4
    assert res.best_epoch == int(np.argmin(objectives)) + 1
    assert res.best_objective == pytest.approx(min(objectives))
    # the selected model's validation results are those of the best epoch, per level of the grid
    assert set(res.valid) == {"0", "0.5"}
    assert np.mean([res.valid[k]["MAE"] for k in res.valid]) == pytest.approx(res.best_objective)
    assert set(res.test) == {"0", "0.5"} and "Non0_F1_score" in res.test["0"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    assert any(k.startswith("loss/") and k != "loss/loss" for k in json.loads(lines[0]))
    assert (tmp_path / "checkpoint" / "state.pt").exists()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


class CrashAfter(LocalSession):
    """Dies right after the n-th checkpoint has been written, like a killed process."""

    def __init__(self, run_dir, n, resume):
        super().__init__(run_dir, resume=resume)
        self.n, self.seen = n, 0

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.parametrize("model", ["senti_ifusion"])  # two stages: the resume crosses the stage boundary
def test_resume_after_crash_matches_uninterrupted_run(tiny_data, tmp_path, model):
    cfg = tiny_config(model=model, epochs=4)
    full = run(cfg, tiny_data, LocalSession(tmp_path / "a", resume=False), verbose=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tiny_data, CrashAfter(tmp_path / "b", 2, resume=False), verbose=False)
    resumed = run(cfg, tiny_data, LocalSession(tmp_path / "b", resume=True), verbose=False)
    assert resumed.epochs_run == 4
    # NaN-aware: the epochs of stage 'completion' have no objective
    np.testing.assert_equal([h["objective"] for h in resumed.history], [h["objective"] for h in full.history])
    assert resumed.best_epoch == full.best_epoch
    assert resumed.test == full.test
    a = torch.load(tmp_path / "a" / "checkpoint" / "state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint" / "state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_the_run(tiny_data, tmp_path):
    data = copy.deepcopy(tiny_data)
    data["train"].labels[:] = np.inf
    with pytest.raises(NonFiniteLossError, match="epoch 1 step 1"):
        run(tiny_config(epochs=1), data, LocalSession(tmp_path), verbose=False)


def test_config_refuses_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key"):
        load_train_config(None, ["model.name=fsrf", "scenario=intra", "train.epochz=3"])
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_train_config(None, ["model.name=fsrf", "scenario=intra", "train.lr=-1"])
    with pytest.raises(ConfigError, match="unknown model 'fsfr'"):
        load_train_config(None, ["model.name=fsfr", "scenario=intra"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: fsrf, w_nonsense: 1}\nscenario: intra\n")
    with pytest.raises(ConfigError, match=rf"{bad}: model\.w_nonsense: unknown key"):
        load_train_config(bad)


def test_cli_reports_bad_input_without_traceback(capsys):
    from raymsa.train.__main__ import main

    assert main(["model.name=fsrf", "scenario=intra", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "train.epochz: unknown key" in err and "Traceback" not in err
    assert main(["model.name=fsrf", "scenario=intra", "data.path=/nonexistent/mosi.pkl"]) == 2
    assert "/nonexistent/mosi.pkl" in capsys.readouterr().err


def test_cli_runs_one_training(tmp_path, capsys, tiny_data, monkeypatch):
    from raymsa.train import __main__ as cli
    from raymsa.train.config import DataConfig

    monkeypatch.setattr(DataConfig, "load", lambda self: tiny_data)
    assert cli.main(["model.name=late_fusion", "model.variant=tiny", "scenario=inter", "train.epochs=2",
                     "train.batch_size=32", f"--output={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "test " in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert math.isfinite(summary["summary"]["test"]["MAE"])


def test_stage_schedule_gives_each_stage_its_share():
    stages = [Stage("completion", 0.3), Stage("joint", 0.7)]
    assert [stage_for_epoch(stages, e, 10) for e in range(10)] == ["completion"] * 3 + ["joint"] * 7
    assert [stage_for_epoch(stages, e, 2) for e in range(2)] == ["completion", "joint"]
    # one epoch: the final stage, the only one selection may pick (a 'completion'-only run has no model)
    assert stage_for_epoch(stages, 0, 1) == "joint"


def test_only_the_final_stage_is_selected_or_reported(tiny_data, tmp_path):
    """Senti-iFusion's stage 'completion' has no fusion: its epochs report no objective (NaN), so
    neither selection nor ASHA (which skips NaN rewards) can pick a stage-1 checkpoint, even when
    its validation MAE is the best of the run."""
    # cosine: under the plateau schedule patience 1 is refused (the LR could never drop before the stop)
    cfg = tiny_config(model="senti_ifusion", epochs=4, patience=1, schedule="cosine")
    cfg.model.stage1_fraction = 0.5
    res = run(cfg, tiny_data, LocalSession(tmp_path, resume=False), verbose=False)
    stages = [h["stage"] for h in res.history]
    assert stages[:2] == ["completion", "completion"]
    assert all(math.isnan(h["objective"]) and math.isnan(h["best_objective"])
               for h in res.history if h["stage"] == "completion")
    assert all(math.isfinite(h["objective"]) for h in res.history if h["stage"] == "joint")
    assert res.history[res.best_epoch - 1]["stage"] == "joint"
    # patience counts judged epochs only: the run reaches the joint stage although patience is 1
    assert len(res.history) >= 3


def test_shards_are_disjoint_equal_and_seeded():
    parts = [shard_indices(100, 32, seed=1, epoch=3, rank=r, world=2) for r in range(2)]
    assert [len(b) for b in parts[0]] == [len(b) for b in parts[1]]
    flat = torch.cat([torch.cat(p) for p in parts])
    assert len(set(flat.tolist())) == len(flat) >= 96
    again = shard_indices(100, 32, seed=1, epoch=3, rank=0, world=2)
    assert all(torch.equal(a, b) for a, b in zip(again, parts[0]))
    other = shard_indices(100, 32, seed=1, epoch=4, rank=0, world=2)
    assert not torch.equal(other[0], parts[0][0])


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse_and_say_how_to_run(path):
    assert path.read_text().startswith("#") and "python -m raymsa.train" in path.read_text()
    cfg = load_train_config(path)
    assert cfg.model.name and cfg.scenario.levels


def test_final_eval_rows_carry_the_arm_and_the_diagnostics(tiny_data, tmp_path):
    """write_final_eval: every row names its eval scenario's knowledge arm; Senti-iFusion adds its
    diag/ rows (integrity error per modality, dominant shares, collapse cosines) at every level."""
    import pandas as pd

    from raymsa.missing import ScenarioConfig
    from raymsa.train.loop import EVAL_COLUMNS, FinalEval

    cfg = tiny_config(model="senti_ifusion", epochs=2)
    scen = [ScenarioConfig(kind="intra", levels=[0.0, 0.5]),
            ScenarioConfig(kind="intra", name="intra_known", knowledge="known", levels=[0.0, 0.5])]
    fe = FinalEval(scen, tmp_path / "eval.csv", {"model": "senti_ifusion", "scenario": "intra", "seed": 1,
                                                 "config_id": "default"})
    run(cfg, tiny_data, LocalSession(tmp_path / "run", resume=False), final_eval=fe, verbose=False)
    df = pd.read_csv(tmp_path / "eval.csv", dtype={"level": str})
    assert list(df.columns) == list(EVAL_COLUMNS)
    assert dict(df.groupby("eval_scenario")["knowledge"].agg(set)) == {"intra": {"unknown"},
                                                                       "intra_known": {"known"}}
    diag = df[df["metric"].str.startswith("diag/")]
    for lv in ("0", "0.5"):
        got = set(diag.loc[(diag["eval_scenario"] == "intra") & (diag["level"] == lv), "metric"])
        assert {"diag/integrity_mae/audio", "diag/integrity_bias/text", "diag/dominant_share/vision",
                "diag/cosine/consistent/text"} <= got
    # the true erasure at 0 is none: integrity error is the estimator's alone, and finite
    assert diag["value"].notna().all()


def _checkpoint(run_dir):
    return torch.load(Path(run_dir) / "checkpoint" / "state.pt", weights_only=True)


def test_weight_average_of_one_step_is_the_raw_run(tiny_data, tmp_path):
    # a horizon shorter than one step makes the decay 0: the average is the weights themselves, so
    # every number of the run must be the plain run's (the average draws no random numbers)
    plain = run(tiny_config(epochs=3), tiny_data, LocalSession(tmp_path / "a", resume=False), verbose=False)
    same = run(tiny_config(epochs=3, ema_epochs=1e-3), tiny_data, LocalSession(tmp_path / "b", resume=False),
               verbose=False)
    assert [h["objective"] for h in same.history] == [h["objective"] for h in plain.history]
    assert same.test == plain.test


def test_weight_average_is_what_validation_selects_and_tests(tiny_data, tmp_path):
    from raymsa.models import DataSpec, build_model
    from raymsa.missing import split_seed
    from raymsa.train.batches import SplitTensors
    from raymsa.train.evaluate import GridEvaluator, grid_mean

    cfg = tiny_config(epochs=3, ema_epochs=1.0)
    res = run(cfg, tiny_data, LocalSession(tmp_path, resume=False), verbose=False)
    st = _checkpoint(tmp_path)
    averaged = {k[len("module."):]: v for k, v in st["ema"].items() if k.startswith("module.")}
    assert averaged.keys() == st["model"].keys()
    # the average lags the raw weights: not equal after three epochs of steps
    assert any(not torch.equal(averaged[k], st["model"][k]) for k in averaged if averaged[k].is_floating_point())
    # the last epoch's validation objective is that of the averaged weights, not of the raw ones
    model = build_model("fsrf", cfg.model, spec=DataSpec.from_data(tiny_data, tiny_data.dataset))
    grid = GridEvaluator(SplitTensors.from_split(tiny_data["valid"]), cfg.scenario, split_seed(cfg.train.seed, "valid"))

    def objective(state):
        model.load_state_dict(state)
        return grid_mean(grid.evaluate(model, tiny_data.dataset, 64, torch.device("cpu"), False), "MAE")

    assert objective(averaged) == pytest.approx(res.history[-1]["objective"], abs=1e-6)
    assert objective(st["model"]) != pytest.approx(res.history[-1]["objective"], abs=1e-6)
    # and the selected (averaged) weights are what the run tested and kept
    assert objective(st["best_model"]) == pytest.approx(res.best_objective, abs=1e-6)


def test_weight_average_resumes_across_the_stage_boundary(tiny_data, tmp_path):
    cfg = tiny_config(model="senti_ifusion", epochs=4, ema_epochs=0.5)
    full = run(cfg, tiny_data, LocalSession(tmp_path / "a", resume=False), verbose=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tiny_data, CrashAfter(tmp_path / "b", 2, resume=False), verbose=False)
    resumed = run(cfg, tiny_data, LocalSession(tmp_path / "b", resume=True), verbose=False)
    np.testing.assert_equal([h["objective"] for h in resumed.history], [h["objective"] for h in full.history])
    assert resumed.test == full.test
    a, b = _checkpoint(tmp_path / "a")["ema"], _checkpoint(tmp_path / "b")["ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the average restarted with the final stage: it holds only that stage's steps
    stages = [h["stage"] for h in full.history]
    steps = len(shard_indices(len(tiny_data["train"]), 32, seed=1111, epoch=0, rank=0, world=1))
    assert int(a["n_averaged"]) == stages.count(stages[-1]) * steps
    # a checkpoint without an average is refused when the config asks for one, naming the option
    plain = tiny_config(model="senti_ifusion", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        run(plain, tiny_data, CrashAfter(tmp_path / "c", 1, resume=False), verbose=False)
    with pytest.raises(RuntimeError, match="ema_epochs"):
        run(cfg, tiny_data, LocalSession(tmp_path / "c", resume=True), verbose=False)

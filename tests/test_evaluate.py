"""The one-pass grid evaluator (levels stacked, chunks cut to their longest sample) against the plain
per-level pass over the split in its own order: the same predictions up to float rounding, so the
same metrics and diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raymsa.metrics import mmsa_metrics
from raymsa.missing import ScenarioConfig
from raymsa.models import DataSpec, build_model
from raymsa.train.batches import SplitTensors
from raymsa.train.evaluate import GridEvaluator, noise_scale, unfused_attention


@pytest.mark.parametrize("model_name,kind,knowledge", [
    ("fsrf", "intra", "unknown"), ("senti_ifusion", "mixed", "unknown"), ("late_fusion", "subset", "unknown"),
    ("fsrf", "inter", "known"), ("senti_ifusion", "noise", "unknown"),
])
def test_one_pass_matches_the_per_level_pass(tiny_data, model_name, kind, knowledge):
    torch.manual_seed(0)
    tensors = SplitTensors.from_split(tiny_data["test"], 40)
    lengths = tensors.valid["vision"].sum(1)
    assert lengths.max() < tensors.valid["vision"].shape[1] or lengths.min() < lengths.max()  # something to cut
    sc = ScenarioConfig(kind=kind, knowledge=knowledge)
    scale = noise_scale(SplitTensors.from_split(tiny_data["train"], 40)) if kind == "noise" else None
    grid = GridEvaluator(tensors, sc, 7, scale=scale)
    model = build_model(model_name, {"variant": "tiny"}, spec=DataSpec.from_data(tiny_data, "mosi")).eval()
    model.set_stage(model.stages()[-1].name)

    out = grid.run(model, 24, torch.device("cpu"), diagnose=True)  # 24 rows: chunks of 24 // levels samples
    ref_diag = grid.diagnose(model, 16, torch.device("cpu"))
    labels = tensors.labels.numpy()
    assert list(out.preds) == list(grid.masks)
    for level, miss in grid.masks.items():
        ref = grid.predict(model, miss, 16, torch.device("cpu"))
        np.testing.assert_allclose(out.preds[level], ref, rtol=1e-4, atol=1e-5)
        new_m, ref_m = mmsa_metrics(out.preds[level], labels, "mosi"), mmsa_metrics(ref, labels, "mosi")
        assert new_m["MAE"] == pytest.approx(ref_m["MAE"], abs=1e-5)
        assert new_m["Corr"] == pytest.approx(ref_m["Corr"], abs=1e-4)
    assert out.diagnostics.keys() == ref_diag.keys()
    for level, d in ref_diag.items():
        assert out.diagnostics[level].keys() == d.keys()
        for k, v in d.items():
            assert out.diagnostics[level][k] == pytest.approx(v, abs=1e-4), (level, k)
    assert grid.evaluate(model, "mosi", 24, torch.device("cpu")).keys() == grid.masks.keys()


@pytest.mark.parametrize("model_name", ["fsrf", "late_fusion"])
def test_evaluation_off_the_fused_attention_path_predicts_the_same(tiny_data, model_name):
    torch.manual_seed(0)
    tensors = SplitTensors.from_split(tiny_data["test"], 40)
    grid = GridEvaluator(tensors, ScenarioConfig(kind="intra"), 7)
    model = build_model(model_name, {"variant": "tiny"}, spec=DataSpec.from_data(tiny_data, "mosi")).eval()
    model.set_stage(model.stages()[-1].name)
    assert torch.backends.mha.get_fastpath_enabled()
    new = grid.run(model, 24, torch.device("cpu")).preds
    assert torch.backends.mha.get_fastpath_enabled()  # restored after the pass
    miss = next(iter(grid.masks.values()))
    fused = []
    orig = torch._transformer_encoder_layer_fwd

    def spy(*a, **k):
        fused.append(1)
        return orig(*a, **k)

    torch._transformer_encoder_layer_fwd = spy
    try:
        grid.predict(model, miss, 16, torch.device("cpu"))
        assert not fused  # the evaluator's own passes never take the fused path
        with torch.inference_mode():  # outside it, torch's fused path as before: the reference
            ref = torch.cat([model(b.model_input("unknown"))["pred"] for b in grid.batches(miss, 16, torch.device("cpu"))])
        assert fused
    finally:
        torch._transformer_encoder_layer_fwd = orig
    np.testing.assert_allclose(new[next(iter(grid.masks))], ref.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError), unfused_attention(torch.device("cpu")):
        assert not torch.backends.mha.get_fastpath_enabled()
        raise RuntimeError
    assert torch.backends.mha.get_fastpath_enabled()


def test_run_times_its_parts_and_reuses_its_test_pass(tiny_data, tmp_path):
    """The final evaluation reuses the run's own test pass (same masks): eval.csv's metrics of the
    training scenario are RunResult.test's; every timed part is there and adds up below the wall."""
    import time

    import pandas as pd

    from raymsa.train.config import parse_train_config
    from raymsa.train.loop import TIMED_PARTS, FinalEval, run
    from raymsa.train.session import LocalSession

    cfg = parse_train_config({"model": {"name": "fsrf", "variant": "tiny"}, "data": {"max_train": 48, "max_eval": 24},
                              "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
                              "train": {"epochs": 2, "batch_size": 16, "threads": 1}}, "test")
    other = ScenarioConfig(kind="inter", levels=[0.3])
    fe = FinalEval([cfg.scenario, other], tmp_path / "eval.csv", {"model": "fsrf", "scenario": "intra", "seed": 1,
                                                                  "config_id": "default"})
    t0 = time.perf_counter()
    res = run(cfg, tiny_data, LocalSession(tmp_path / "run", resume=False), final_eval=fe, verbose=False)
    wall = time.perf_counter() - t0
    df = pd.read_csv(tmp_path / "eval.csv", dtype={"level": str})
    mae = df[(df["metric"] == "MAE") & (df["eval_scenario"] == "intra")].set_index("level")["value"]
    assert {lv: m["MAE"] for lv, m in res.test.items()} == pytest.approx(mae.to_dict())
    assert set(df["eval_scenario"]) == {"intra", "inter"}
    assert set(res.timing) == set(TIMED_PARTS) and all(v > 0 for v in res.timing.values())
    assert sum(res.timing.values()) < wall
    assert res.history[-1]["time/train_s"] == pytest.approx(res.timing["train"])

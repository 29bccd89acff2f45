"""preds.npz: the per-sample test predictions written next to eval.csv reproduce eval.csv's values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raymsa.metrics import mmsa_metrics
from raymsa.missing import ScenarioConfig
from raymsa.train.config import parse_train_config
from raymsa.train.loop import FinalEval, run
from raymsa.train.session import LocalSession


def test_preds_npz_reproduces_eval_csv(tiny_data, tmp_path):
    cfg = parse_train_config({
        "model": {"name": "late_fusion", "variant": "tiny"},
        "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
        "train": {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "seed": 7},
    }, "test")
    scenarios = [ScenarioConfig(kind="intra", levels=[0.0, 0.5]), ScenarioConfig(kind="subset", levels=["l", "av"])]
    fe = FinalEval(scenarios, tmp_path / "run" / "eval.csv", {"model": "late_fusion", "scenario": "intra",
                                                              "seed": 7, "config_id": "default"})
    run(cfg, tiny_data, LocalSession(tmp_path / "s", resume=False), final_eval=fe, verbose=False)
    ev = pd.read_csv(fe.out_csv, dtype={"level": str})
    with np.load(tmp_path / "run" / "preds.npz", allow_pickle=False) as z:
        names, levels, pred, labels = z["eval_scenario"], z["level"], z["pred"], z["labels"]
        assert pred.shape == (4, len(labels)) and z["index"].tolist() == list(range(len(labels)))
    assert list(zip(names, levels)) == [("intra", "0"), ("intra", "0.5"), ("subset", "l"), ("subset", "av")]
    np.testing.assert_array_equal(labels, tiny_data["test"].labels[:len(labels)])
    for k, (e, lv) in enumerate(zip(names, levels)):
        got = mmsa_metrics(pred[k], labels, "mosi")
        rows = ev[(ev["eval_scenario"] == e) & (ev["level"] == lv)].set_index("metric")["value"]
        for metric in ("MAE", "Mult_acc_7", "Non0_acc_2"):
            assert abs(got[metric] - rows[metric]) < 1e-9, (e, lv, metric)
    assert not list((tmp_path / "run").glob("*.tmp"))

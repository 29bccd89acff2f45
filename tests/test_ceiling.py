"""The Bayes ceiling of the synthetic data (raymsa.data.ceiling): its shape, its inputs, and a strong
learner fitted on ten times MOSI's training size that must approach it from above."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from raymsa.data.ceiling import (ceiling_rows, label_posterior, sufficient_stats, synthetic_test_split,
                                 valid_masks)
from raymsa.data.synth import MODALITIES, _plan, _structure, generate_split, LIKES
from raymsa.data.types import DataError
from raymsa.missing import ScenarioConfig, eval_missingness, split_seed

LEVELS = [0.0, 0.5, 0.9]


@pytest.fixture(scope="module")
def gen():
    return synthetic_test_split("mosi", 0)


@pytest.fixture(scope="module")
def intra_rows(gen):
    rows = ceiling_rows(gen, ScenarioConfig(kind="intra", levels=LEVELS), mask_seed=1111)
    return {(r["level"], r["metric"]): r["value"] for r in rows}


def _observed(gen, scenario, level, seed):
    valid = {m: torch.from_numpy(v) for m, v in valid_masks(gen).items()}
    miss = eval_missingness(valid, scenario, level, seed)
    return {m: miss.observed[m].numpy() for m in MODALITIES}


def test_ceiling_rises_with_the_missing_rate_and_is_not_trivial_at_zero(intra_rows):
    mae = [intra_rows[(f"{lv:g}", "MAE")] for lv in LEVELS]
    corr = [intra_rows[(f"{lv:g}", "Corr")] for lv in LEVELS]
    acc7 = [intra_rows[(f"{lv:g}", "Mult_acc_7")] for lv in LEVELS]
    assert mae[0] < mae[1] < mae[2] and corr[0] > corr[1] > corr[2] and acc7[0] > acc7[2]
    # label noise, incongruent modalities and frame noise leave a real error even with every frame
    assert 0.4 < mae[0] < 0.8 and corr[0] < 0.95 and acc7[0] < 0.6
    assert mae[2] > mae[0] + 0.3  # a tenth of the frames leaves a poor estimate


def test_statistics_are_read_from_the_arrays_as_the_generator_made_them(gen):
    """The salient frames the ceiling finds in the written features are the generator's own."""
    spec = LIKES["mosi"]
    st = _structure(spec, 0, 0)
    plan = _plan(spec, st, 0, 0, 2, len(gen.raw["regression_labels"]))  # split index 2 = test
    obs = _observed(gen, ScenarioConfig(kind="intra"), 0.5, split_seed(1111, "test"))
    stats = sufficient_stats(gen, obs)
    for m in MODALITIES:
        np.testing.assert_array_equal(stats[m]["n"], (plan.salient[m] & obs[m]).sum(axis=1))
        seen = stats[m]["n"] > 0
        # the salient mean along d estimates what the modality expressed (noise sigma / sqrt(n))
        err = (stats[m]["S"] - plan.expressed[m])[seen] * np.sqrt(stats[m]["n"][seen]) / st.sigma[m]
        assert abs(err.mean()) < 0.15 and 0.85 < err.std() < 1.15, m


def test_ceiling_of_subsets_shows_the_cross_modal_interaction(gen):
    rows = ceiling_rows(gen, ScenarioConfig(kind="subset"), mask_seed=1111)
    mae = {r["level"]: r["value"] for r in rows if r["metric"] == "MAE"}
    assert mae["lav"] < mae["la"] < mae["l"] and mae["lav"] < mae["lv"] < mae["l"]
    assert mae["l"] < mae["av"] < min(mae["a"], mae["v"])  # text dominates


def test_noise_kind_is_refused(gen):
    with pytest.raises(DataError, match="noise"):
        ceiling_rows(gen, ScenarioConfig(kind="noise", levels=[0.5]), mask_seed=1111)


def _features(stats) -> np.ndarray:
    cols = []
    for m in MODALITIES:
        s = stats[m]
        cols += [s["n"], s["S"], s["l"], s["Q"], s["S"] * np.sign(s["Q"]) if m != "text" else s["S"] * 0]
    cols.append(stats["text"]["Q"] * stats["audio"]["S"])
    cols.append((stats["text"]["Q"] + stats["vision"]["Q"]) * stats["vision"]["S"])
    return np.column_stack(cols).astype(np.float64)


@pytest.mark.heavy  # ten gradient-boosting fits on 12840 samples: tens of seconds on 2 cores
def test_a_strong_learner_on_ten_times_the_data_approaches_the_ceiling_from_above(gen, intra_rows):
    """Gradient boosting (absolute error: it predicts a median) on the ceiling's statistics of 10 x
    1284 fresh samples, erased at the same level, tested on the test split under the study's masks:
    never better than the ceiling beyond sampling error, and close to it."""
    scenario = ScenarioConfig(kind="intra", levels=LEVELS)
    chunks = [generate_split("mosi", 0, 3 + c, n=1284) for c in range(10)]
    y_test = gen.raw["regression_labels"].astype(np.float64)
    for level in LEVELS:
        x_train, y_train = [], []
        for c, chunk in enumerate(chunks):
            # training erasure: the intra kind's law (each valid frame kept with probability 1 - r),
            # drawn with numpy: cheaper than hashing, and these samples never meet the study's masks
            rng = np.random.default_rng([77, c, int(level * 10)])
            obs = {m: v & (rng.random(v.shape) >= level) for m, v in valid_masks(chunk).items()}
            x_train.append(_features(sufficient_stats(chunk, obs)))
            y_train.append(chunk.raw["regression_labels"])
        model = HistGradientBoostingRegressor(loss="absolute_error", max_iter=200, learning_rate=0.08,
                                              random_state=0)
        model.fit(np.concatenate(x_train), np.concatenate(y_train))
        obs = _observed(gen, scenario, level, split_seed(1111, "test"))
        stats = sufficient_stats(gen, obs)
        learner_err = np.abs(model.predict(_features(stats)) - y_test)
        post = label_posterior(gen, stats)
        median = np.array([-3.0 + np.argmax(np.cumsum(p) >= 0.5) / 3 for p in post])
        ceiling_err = np.abs(median - y_test)
        assert ceiling_err.mean() == pytest.approx(intra_rows[(f"{level:g}", "MAE")], abs=1e-4)
        diff = learner_err - ceiling_err  # paired: same samples, same masks
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        assert diff.mean() > -2.5 * se, (level, diff.mean(), se)  # never below beyond sampling error
        assert learner_err.mean() < 1.1 * ceiling_err.mean(), (level, learner_err.mean(), ceiling_err.mean())


def test_cli_writes_tidy_rows_and_refuses_bad_input(tmp_path, capsys):
    import pandas as pd

    from raymsa.data.__main__ import main

    out = tmp_path / "c.csv"
    assert main(["ceiling", "--like", "mosi", "--scenario", "inter", "--levels", "0", "0.6",
                 "--seed", "1112", "--max-eval", "60", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["scenario", "level", "seed", "metric", "value"]
    assert set(df["level"]) == {0, 0.6} and set(df["seed"]) == {1112} and len(df) == 2 * 8
    mae = df[df.metric == "MAE"].set_index("level")["value"]
    assert mae[0.6] > mae[0]
    capsys.readouterr()
    assert main(["ceiling", "--like", "mosi", "--scenario", "foo", "--out", str(out)]) == 2
    assert "--scenario" in capsys.readouterr().err

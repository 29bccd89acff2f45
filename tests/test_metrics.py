"""raymsa.metrics against a plain transcription of the field's definitions, hand cases and traps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from raymsa.metrics import (
    METRIC_DIRECTION,
    MOSI_KEYS,
    SIMS_KEYS,
    auc_trapezoid,
    effective_robustness,
    format_metric,
    metric_label,
    mmsa_metrics,
    mean_over_levels,
    robustness_summary,
)

# ---------------------------------------------------------------------------------------------
# An independent reference: Python loops over the definitions in protocols.md section 3.


def ref_weighted_f1(y_true, y_pred):
    """sum_c support_c / N * F1_c over the classes present in y_true or y_pred."""
    n = len(y_true)
    total = 0.0
    for c in sorted(set(y_true) | set(y_pred)):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        total += sum(1 for t in y_true if t == c) / n * f1
    return total


def ref_pearson(p, y):
    n = len(p)
    mp, my = sum(p) / n, sum(y) / n
    cov = sum((a - mp) * (b - my) for a, b in zip(p, y))
    vp = sum((a - mp) ** 2 for a in p)
    vy = sum((b - my) ** 2 for b in y)
    return math.nan if vp == 0 or vy == 0 else cov / math.sqrt(vp * vy)


def clip(x, lo, hi):
    return min(max(x, lo), hi)


def ref_mosi(p, y):
    n = len(p)
    has0_t, has0_p = [b >= 0 for b in y], [a >= 0 for a in p]
    nz = [i for i in range(n) if y[i] != 0]
    non0_t, non0_p = [y[i] > 0 for i in nz], [p[i] > 0 for i in nz]

    def acc(k):  # Python's round() is round-half-to-even, like numpy's
        return sum(round(clip(a, -k, k)) == round(clip(b, -k, k)) for a, b in zip(p, y)) / n

    return {
        "Has0_acc_2": sum(a == b for a, b in zip(has0_t, has0_p)) / n,
        "Has0_F1_score": ref_weighted_f1(has0_t, has0_p),
        "Non0_acc_2": sum(a == b for a, b in zip(non0_t, non0_p)) / len(nz),
        "Non0_F1_score": ref_weighted_f1(non0_t, non0_p),
        "Mult_acc_5": acc(2),
        "Mult_acc_7": acc(3),
        "MAE": sum(abs(a - b) for a, b in zip(p, y)) / n,
        "Corr": ref_pearson(p, y),
    }


def ref_bin(x, edges):
    for i in range(len(edges) - 1):
        if edges[i] < x <= edges[i + 1]:
            return i
    raise AssertionError(x)


def ref_sims(p, y):
    n = len(p)
    p = [clip(a, -1.0, 1.0) for a in p]
    y = [clip(b, -1.0, 1.0) for b in y]
    e2, e3, e5 = [-1.01, 0.0, 1.01], [-1.01, -0.1, 0.1, 1.01], [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]

    def bins(edges):
        return [ref_bin(a, edges) for a in p], [ref_bin(b, edges) for b in y]

    (p2, y2), (p3, y3), (p5, y5) = bins(e2), bins(e3), bins(e5)
    return {
        "Mult_acc_2": sum(a == b for a, b in zip(p2, y2)) / n,
        "Mult_acc_3": sum(a == b for a, b in zip(p3, y3)) / n,
        "Mult_acc_5": sum(a == b for a, b in zip(p5, y5)) / n,
        "F1_score": ref_weighted_f1(y2, p2),
        "MAE": sum(abs(a - b) for a, b in zip(p, y)) / n,
        "Corr": ref_pearson(p, y),
    }


def assert_same(ours, ref, tol=1e-9):
    assert list(ours) == list(ref)
    for k in ref:
        a, b = ours[k], ref[k]
        assert isinstance(a, float), k
        if math.isnan(b):
            assert math.isnan(a), k
        else:
            assert abs(a - b) <= tol, (k, a, b)


MOSI_GRID = [-3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
SIMS_GRID = [-1.5, -1.0, -0.8, -0.7, -0.6, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.6, 0.7, 0.8, 1.0, 1.2]


def draw(rng, n, scale, grid):
    """Continuous values, .5 ties, bin edges and exact zeros mixed in."""
    x = rng.normal(0, scale, n)
    on_grid = rng.random(n) < 0.4
    x[on_grid] = rng.choice(grid, on_grid.sum())
    x[rng.random(n) < 0.1] = 0.0
    return x


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_matches_reference_on_random_inputs(dataset):
    rng = np.random.default_rng(7)
    sims = dataset == "sims"
    for trial in range(150):
        n = int(rng.integers(2, 120))
        p = draw(rng, n, 0.6 if sims else 1.8, SIMS_GRID if sims else MOSI_GRID)
        y = draw(rng, n, 0.6 if sims else 1.8, SIMS_GRID if sims else MOSI_GRID)
        if trial % 10 == 0:
            # constant predictions: Corr NaN, no crash. A dyadic constant keeps the mean exact; others
            # give np.corrcoef's rounding noise (~1e-17) instead of NaN, and we keep what it gives.
            p[:] = np.round(p[0] * 4) / 4
        if not sims and np.all(y == 0):
            y[0] = 1.0
        ref = (ref_sims if sims else ref_mosi)(p.tolist(), y.tolist())
        assert_same(mmsa_metrics(p, y, dataset), ref)
        assert_same(mmsa_metrics(torch.from_numpy(p), torch.from_numpy(y), dataset), ref)
        assert_same(mmsa_metrics(p.tolist(), y.reshape(-1, 1), dataset.upper()), ref)


def test_mosi_hand_computed():
    p = [-0.5, 0.5, 2.5, -2.6, 0.0, 1.49]
    y = [0.0, 1.0, 3.0, -3.0, -1.0, 1.5]
    r = mmsa_metrics(p, y, "mosi")
    assert r["Has0_acc_2"] == pytest.approx(4 / 6)
    assert r["Has0_F1_score"] == pytest.approx(4 / 6)  # (4 * 0.75 + 2 * 0.5) / 6
    assert r["Non0_acc_2"] == 1.0 and r["Non0_F1_score"] == 1.0  # y == 0 dropped; p == 0 is not > 0
    assert r["Mult_acc_7"] == pytest.approx(2 / 6)  # 2.5 -> 2 (half to even) misses 3; 1.5 -> 2 misses 1
    assert r["Mult_acc_5"] == pytest.approx(3 / 6)  # clipping to 2 makes 2.5 vs 3 agree
    assert r["MAE"] == pytest.approx(2.91 / 6)
    assert r["Corr"] == pytest.approx(np.corrcoef(p, y)[0, 1])


def test_sims_hand_computed_edges():
    p = [-1.2, -0.7, -0.1, 0.0, 0.1, 0.7, 0.71, 1.5]
    y = [-1.0, -0.69, -0.11, 0.05, 0.1, 0.7, 0.9, 1.0]
    r = mmsa_metrics(p, y, "sims")
    assert r["Mult_acc_2"] == pytest.approx(7 / 8)  # 0.0 is negative: (-1.01, 0]
    assert r["Mult_acc_3"] == 1.0  # -0.1 -> negative, 0.1 -> neutral: bins are (lo, hi]
    assert r["Mult_acc_5"] == pytest.approx(7 / 8)  # -0.7 -> class 0 but -0.69 -> class 1
    assert r["F1_score"] == pytest.approx(442 / 504)  # (3 * 6/7 + 5 * 8/9) / 8
    assert r["MAE"] == pytest.approx(0.26 / 8)  # on clipped values: -1.2 -> -1 and 1.5 -> 1 cost nothing
    assert r["Corr"] == pytest.approx(np.corrcoef(np.clip(p, -1, 1), y)[0, 1])


def test_sims_thresholds_compare_in_input_dtype():
    """MMSA thresholds float32 tensors in float32: float32(0.1) is not > 0.1, float32(-0.7) is not > -0.7.

    Upcasting to float64 first would move both to the next bin (0.1f = 0.1000000015 > 0.1).
    """
    vals = [0.1, -0.7, -0.1, 0.7]
    r32 = mmsa_metrics(torch.tensor(vals, dtype=torch.float32), np.array(vals), "sims")
    assert r32["Mult_acc_3"] == 1.0 and r32["Mult_acc_5"] == 1.0
    up = mmsa_metrics(torch.tensor(vals, dtype=torch.float32).double(), np.array(vals), "sims")
    assert up["Mult_acc_5"] < 1.0


def test_f1_argument_order_trap():
    """sklearn's weighted F1 weights by y_true support; the swapped call (old MMSA) weights by y_pred."""
    y = [1, 1, 1, 1, 1, -1]
    p = [1, 1, 1, -1, -1, -1]
    r = mmsa_metrics(p, y, "mosi")
    yt, yp = np.array(y) >= 0, np.array(p) >= 0
    swapped = f1_score(yp, yt, average="weighted")
    assert r["Has0_F1_score"] == pytest.approx(0.75 * 5 / 6 + 0.5 / 6)  # 0.7083
    assert swapped == pytest.approx(0.625)
    assert abs(r["Has0_F1_score"] - swapped) > 0.05
    assert r["Non0_F1_score"] == pytest.approx(r["Has0_F1_score"])


def test_degenerate_inputs():
    r = mmsa_metrics(np.zeros(5), [1.0, -1.0, 0.0, 2.0, 3.0], "mosi")  # constant predictions
    assert math.isnan(r["Corr"]) and r["MAE"] == pytest.approx(1.4)
    r = mmsa_metrics([0.5, -0.5], [0.0, 0.0], "mosi")  # every label 0: Non0 undefined
    assert math.isnan(r["Non0_acc_2"]) and math.isnan(r["Non0_F1_score"])
    r = mmsa_metrics([0.3, 0.3, 0.3], [0.2, -0.5, 0.9], "sims")
    assert math.isnan(r["Corr"]) and set(r) == set(SIMS_KEYS)
    with pytest.raises(ValueError, match="non-finite"):
        mmsa_metrics([float("nan"), 1.0], [1.0, 1.0], "mosi")
    with pytest.raises(ValueError, match="length"):
        mmsa_metrics([1.0, 2.0], [1.0], "mosi")
    with pytest.raises(ValueError, match="dataset"):
        mmsa_metrics([1.0], [1.0], "iemocap")


def test_keys_direction_and_formatting():
    assert tuple(mmsa_metrics([1.0, -1.0], [1.0, -2.0], "mosei")) == MOSI_KEYS
    assert tuple(mmsa_metrics([1.0, -1.0], [1.0, -0.2], "sims")) == SIMS_KEYS
    assert set(METRIC_DIRECTION) == set(MOSI_KEYS) | set(SIMS_KEYS)
    assert METRIC_DIRECTION["MAE"] is False and all(v for k, v in METRIC_DIRECTION.items() if k != "MAE")
    assert format_metric("Non0_acc_2", 0.854619) == "85.46"
    assert format_metric("MAE", 0.70849) == "0.708" and format_metric("Corr", 0.7963) == "0.796"
    assert format_metric("Corr", float("nan")) == "nan"
    assert metric_label("Non0_acc_2") == "Acc-2 (Non0)" and metric_label("Mult_acc_7") == "Acc-7"


# ---------------------------------------------------------------------------------------------
# Robustness summaries


def test_robustness_summaries_hand_computed():
    x = [0.0, 0.5, 1.0]
    f = [1.0, 0.5, 0.0]
    ref = [1.0, 0.25, 0.0]
    assert mean_over_levels(f) == pytest.approx(0.5)
    assert auc_trapezoid(x, f) == pytest.approx(0.5)
    assert auc_trapezoid([0.0, 0.1, 0.4], [2.0, 1.0, 1.0]) == pytest.approx(0.15 + 0.3)  # uneven spacing
    # (f_i - f_0) = [0, -.5, -1], (R_i - R_0) = [0, -.75, -1]: f loses 0.25 less than R
    assert effective_robustness(x, f, ref) == pytest.approx(0.25)
    assert effective_robustness(x, f, ref, higher_is_better=False) == pytest.approx(-0.25)
    # MAE rising more slowly than the reference is more robust: positive
    assert effective_robustness(x, [0.7, 0.8, 0.9], [0.7, 1.0, 1.2], higher_is_better=False) == pytest.approx(0.5)
    s = robustness_summary(x, [0.7, 0.8, 0.9], "MAE", ref_values=[0.7, 1.0, 1.2])
    assert s == pytest.approx({"mean": 0.8, "auc": 0.8, "effective_robustness": 0.5})


def test_robustness_validation_and_nan():
    assert math.isnan(mean_over_levels([0.5, float("nan")]))
    assert math.isnan(auc_trapezoid([0, 1], [0.5, float("nan")]))
    assert math.isnan(effective_robustness([0, 1], [1.0, 0.5], [1.0, float("nan")]))
    with pytest.raises(ValueError, match="length"):
        auc_trapezoid([0, 0.5, 1], [1, 2])
    with pytest.raises(ValueError, match="increasing"):
        auc_trapezoid([0, 1, 0.5], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        effective_robustness([0], [1], [1])
    with pytest.raises(ValueError, match="length"):
        effective_robustness([0, 1], [1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        mean_over_levels([])

"""Metrics exactly as the MSA field computes them (MMSA `MetricsTop`), and robustness summaries.

`mmsa_metrics` returns unrounded floats under the field's key names. Definitions (docs/metrics.md):

MOSI / MOSEI (p = predictions, y = labels):
    Has0_acc_2, Has0_F1_score   classes y >= 0 vs p >= 0 over all samples
    Non0_acc_2, Non0_F1_score   samples with y != 0 only, classes y > 0 vs p > 0
    Mult_acc_7 / Mult_acc_5     mean(round(clip(p, +-3|2)) == round(clip(y, +-3|2))), numpy rounding
    MAE, Corr                   mean |p - y| (unclipped), Pearson r (np.corrcoef)
SIMS: p and y clipped to [-1, 1] first (MAE and Corr use the clipped values), then half-open bins (lo, hi]:
    Mult_acc_2 / _3 / _5 with edges (-1.01, 0, 1.01) / (-1.01, -0.1, 0.1, 1.01) /
    (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01); F1_score is the weighted F1 of the 2-class bins.

F1 is sklearn's f1_score(y_true, y_pred, average='weighted'), in that argument order. Inputs keep
their dtype for the class thresholds, as MMSA does with float32 tensors (float32 0.1 is not > 0.1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score

DATASETS: tuple[str, ...] = ("mosi", "mosei", "sims")
MOSI_KEYS: tuple[str, ...] = (
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
)
SIMS_KEYS: tuple[str, ...] = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")

# higher is better? (MAE is the only lower-is-better metric)
METRIC_DIRECTION: dict[str, bool] = {k: k != "MAE" for k in (*MOSI_KEYS, *SIMS_KEYS)}

# SIMS bin edges, half-open (lo, hi]
SIMS_EDGES: dict[int, tuple[float, ...]] = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}

_LABELS: dict[str, str] = {
    "Has0_acc_2": "Acc-2 (Has0)",
    "Has0_F1_score": "F1 (Has0)",
    "Non0_acc_2": "Acc-2 (Non0)",
    "Non0_F1_score": "F1 (Non0)",
    "Mult_acc_2": "Acc-2",
    "Mult_acc_3": "Acc-3",
    "Mult_acc_5": "Acc-5",
    "Mult_acc_7": "Acc-7",
    "F1_score": "F1",
    "MAE": "MAE",
    "Corr": "Corr",
}


def metric_keys(dataset: str) -> tuple[str, ...]:
    return SIMS_KEYS if _dataset(dataset) == "sims" else MOSI_KEYS


def _dataset(dataset: str) -> str:
    d = str(dataset).lower()
    if d not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return d


def _as_1d(x, name: str) -> np.ndarray:
    """Tensor / array / list -> 1-D float numpy array, keeping float32/float64 as they are."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype not in (torch.float32, torch.float64):  # ints, bool, half, bfloat16
            x = x.double()
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    a = a.reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(a)))} non-finite values")
    return a


def _weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if y_true.size == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single-class inputs: sklearn warns, the value is the field's
        return float(f1_score(y_true, y_pred, average="weighted"))


def _corr(p: np.ndarray, y: np.ndarray) -> float:
    """Pearson r as np.corrcoef gives it; NaN (no warning) when p or y is constant, as in the field."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(np.corrcoef(p, y)[0][1])


def _mult_acc(p: np.ndarray, y: np.ndarray, bound: float) -> float:
    # np.round is round-half-to-even (2.5 -> 2, -0.5 -> -0.0), as in every MSA paper's numbers
    return float(np.mean(np.round(np.clip(p, -bound, bound)) == np.round(np.clip(y, -bound, bound))))


def _sims_bins(x: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Class of each value for half-open bins (lo, hi]: the number of inner edges strictly below it.

    Comparisons run in x's own dtype (a Python float edge is weakly typed), as in MMSA.
    """
    cls = np.zeros(x.shape, dtype=np.int64)
    for e in edges[1:-1]:
        cls += x > e
    return cls


def mmsa_metrics(preds, labels, dataset: str) -> dict[str, float]:
    """The field's metrics for regression outputs; unrounded floats keyed as in MMSA.

    preds, labels: array-likes or tensors of N values (any shape that flattens to N).
    dataset: 'mosi' | 'mosei' | 'sims' (case-insensitive).
    Corr is NaN for constant predictions (as np.corrcoef gives it); Non0 metrics are NaN when every
    label is 0 (MMSA would crash). Non-finite inputs raise ValueError.
    """
    d = _dataset(dataset)
    p, y = _as_1d(preds, "preds"), _as_1d(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"preds and labels differ in length: {p.size} vs {y.size}")

    if d == "sims":
        p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)
        accs = {}
        for k, edges in SIMS_EDGES.items():
            accs[k] = (_sims_bins(p, edges), _sims_bins(y, edges))
        return {
            "Mult_acc_2": float(np.mean(accs[2][0] == accs[2][1])),
            "Mult_acc_3": float(np.mean(accs[3][0] == accs[3][1])),
            "Mult_acc_5": float(np.mean(accs[5][0] == accs[5][1])),
            "F1_score": _weighted_f1(accs[2][1], accs[2][0]),
            "MAE": float(np.mean(np.abs(p - y))),
            "Corr": _corr(p, y),
        }

    nz = y != 0
    y_has0, p_has0 = y >= 0, p >= 0
    y_non0, p_non0 = y[nz] > 0, p[nz] > 0
    return {
        "Has0_acc_2": float(np.mean(p_has0 == y_has0)),
        "Has0_F1_score": _weighted_f1(y_has0, p_has0),
        "Non0_acc_2": float(np.mean(p_non0 == y_non0)) if nz.any() else math.nan,
        "Non0_F1_score": _weighted_f1(y_non0, p_non0),
        "Mult_acc_5": _mult_acc(p, y, 2.0),
        "Mult_acc_7": _mult_acc(p, y, 3.0),
        "MAE": float(np.mean(np.abs(p - y))),
        "Corr": _corr(p, y),
    }


# ---------------------------------------------------------------------------------------------
# Formatting for reports


def metric_label(key: str) -> str:
    """'Non0_acc_2' -> 'Acc-2 (Non0)': the column name papers use."""
    if key not in _LABELS:
        raise KeyError(f"unknown metric {key!r}")
    return _LABELS[key]


def metric_scale(key: str) -> float:
    """100 for accuracies and F1 (papers print percentages), 1 for MAE and Corr."""
    return 1.0 if key in ("MAE", "Corr") else 100.0


def format_metric(key: str, value: float) -> str:
    """A value as papers print it: accuracies/F1 x100 with 2 decimals, MAE/Corr with 3; 'nan' as is."""
    if value is None or math.isnan(float(value)):
        return "nan"
    if key in ("MAE", "Corr"):
        return f"{value:.3f}"
    return f"{value * 100:.2f}"


# ---------------------------------------------------------------------------------------------
# Robustness summaries of a curve f(x) over missingness levels (protocols: LNLN, TFR-Net, MultiBench)


def _curve(levels, values, name: str = "values") -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(levels, dtype=np.float64).reshape(-1)
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape != f.shape:
        raise ValueError(f"levels and {name} differ in length: {x.size} vs {f.size}")
    if x.size < 2:
        raise ValueError(f"a robustness curve needs at least 2 levels, got {x.size}")
    if not np.all(np.isfinite(x)) or np.any(np.diff(x) <= 0):
        raise ValueError(f"levels must be finite and strictly increasing, got {x.tolist()}")
    return x, f


def mean_over_levels(values) -> float:
    """Plain mean of a metric over the levels (LNLN's 'overall'); NaNs propagate."""
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    if f.size == 0:
        raise ValueError("no values to average")
    return float(np.mean(f))


def auc_trapezoid(levels, values) -> float:
    """Area under f(x) by the trapezoid rule over the given levels (AUILC); not normalised by range."""
    x, f = _curve(levels, values)
    return float(np.sum(np.diff(x) * (f[1:] + f[:-1]) / 2.0))


def effective_robustness(levels, values, ref_values, higher_is_better: bool = True) -> float:
    """MultiBench's effective robustness, raw: sum_i [(f_i - f_0) - (R_i - R_0)].

    Positive means the model loses less than the reference R as missingness grows; the sign is
    flipped for lower-is-better metrics (MAE) so that positive always means more robust. Not
    min-max normalised (that needs a model zoo and makes the number meaningless alone).
    """
    _, f = _curve(levels, values)
    _, r = _curve(levels, ref_values, name="ref_values")
    er = float(np.sum((f - f[0]) - (r - r[0])))
    return er if higher_is_better else -er


def robustness_summary(levels, values, metric: str, ref_values=None) -> dict[str, float]:
    """mean, auc and (with a reference curve) effective_robustness of one metric's curve."""
    out = {"mean": mean_over_levels(values), "auc": auc_trapezoid(levels, values)}
    if ref_values is not None:
        out["effective_robustness"] = effective_robustness(levels, values, ref_values, METRIC_DIRECTION[metric])
    return out

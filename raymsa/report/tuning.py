"""Tuning curves: the expected best validation objective of a search of n trials, n = 1..N, from the
N trials a search ran (trials.csv), with a band of ± one std (Dodge et al. 2019, "Show your work").

Estimator: Tang et al. 2020's unbiased one, n trials drawn *without* replacement from the N observed
ones. With the values sorted best first, v_(1) .. v_(N), the best of a random n-subset is v_(i) with
probability C(N-i, n-1) / C(N, n), so
    E[best_n] = sum_i v_(i) C(N-i, n-1) / C(N, n),   Var[best_n] = sum_i v_(i)^2 (same weights) - E^2.
(Dodge et al.'s estimator draws with replacement and is biased towards the worse at n near N.)
A trial stopped early by halving counts with the objective it had reached: what the search saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import gammaln

from raymsa.report.load import StudyResults


def expected_best(values, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, E[best of n], std[best of n]) for n = 1..N; mode 'min' or 'max'. NaN values are dropped."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    N = v.size
    if N == 0:
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    v = np.sort(v) if mode == "min" else np.sort(v)[::-1]  # best first
    n = np.arange(1, N + 1)
    i = np.arange(1, N + 1)

    def log_comb(a, b):
        with np.errstate(invalid="ignore"):
            return np.where((b >= 0) & (b <= a), gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1), -np.inf)

    # w[n-1, i-1] = C(N-i, n-1) / C(N, n)
    w = np.exp(log_comb(N - i[None, :], n[:, None] - 1) - log_comb(N, n)[:, None])  # (N, N)
    mean = w @ v
    var = np.maximum(w @ v**2 - mean**2, 0.0)
    return n, mean, np.sqrt(var)


def tuning_frame(res: StudyResults) -> pd.DataFrame:
    """tuning.csv: per (model, scenario, n) the expected best validation objective and its std."""
    rows = []
    mode = res.study.objective.get("mode", "min")
    for (m, sc), t in res.trials.items():
        n, mean, std = expected_best(t["objective"].to_numpy(), mode)
        for k, mu, sd in zip(n, mean, std):
            rows.append({"model": m, "scenario": sc, "n_trials": int(k), "expected_best": float(mu),
                         "std": float(sd), "trials_observed": int(len(n))})
    return pd.DataFrame(rows, columns=["model", "scenario", "n_trials", "expected_best", "std", "trials_observed"])

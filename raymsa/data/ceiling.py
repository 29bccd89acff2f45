"""The Bayes-optimal ceiling on the synthetic data: the best test metrics any model could reach.

Computed from the generator's own parameters (raymsa.data.synth), never by training a model. Per
test sample, what a model sees under a missingness level is the erased frames (zero vectors) and
the rest. On this data a real frame is never all zeros, so the observation mask is a function of
the input: the `known` arm (a model told the mask) has the same ceiling as the unknown one.

Given (s, z) (sentiment latent, speaker style), a modality's frames depend on the label only
through three statistics of its observed frames (docs/data.md, "The Bayes ceiling"):

    n_m  = observed salient frames (marker column, noise-free)
    S_m  = their mean along d_m         S_m | s, z ~ N(a_m(z) sqrt(rho_m) s, (1 - rho_m) + sigma_m^2 / n_m)
    Q_m  = observed frames' mean along e_m    Q_m | z ~ N(beta_m z, sigma_m^2 / l_m)

(the incongruence v_m is integrated out analytically; content and nuisance are orthogonal to d_m
and e_m and independent of s and z; the noise is isotropic, so its parts along other directions
tell nothing; token ids are a function of the text features plus independent
draws). So p(y* | seen) is a sum over z = +-1 of a 1-D grid quadrature in y*, and the label
posterior follows from the label noise and rounding. Exact up to the grid (801 points): no Monte
Carlo, hence no standard error column.

Predictors, one per metric: the posterior median (MAE), the posterior mean (Corr: it maximises the
population correlation), the most probable class (Acc-7, Acc-5, Acc-2, SIMS bins). The F1 rows use
the accuracy-optimal decision (weighted F1's own optimum can differ slightly).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.special import logsumexp, ndtr

from raymsa.data.synth import MARKER, MODALITIES, _MARKER_VALUE, Generated, LikeSpec, generate_split
from raymsa.data.types import DataError

CEILING_COLUMNS = ("scenario", "level", "seed", "metric", "value")
_GRID = 801
_MOSI_METRICS = ("MAE", "Corr", "Mult_acc_7", "Mult_acc_5", "Non0_acc_2", "Non0_F1_score",
                 "Has0_acc_2", "Has0_F1_score")
_SIMS_METRICS = ("MAE", "Corr", "Mult_acc_5", "Mult_acc_3", "Mult_acc_2", "F1_score")


# ---- what a model sees, reduced to sufficient statistics ----------------------------------------


def sufficient_stats(gen: Generated, observed: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per modality: n (observed salient frames), S (their mean sentiment column, 0 if none),
    l (observed frames), Q (mean cue column over them, 0 if none), read from the arrays.

    observed: modality -> (N, T) bool, the frames the model sees (valid and not erased).
    """
    st = gen.structure
    out = {}
    for m in MODALITIES:
        x = gen.raw[m]  # (N, T, D)
        obs = observed[m][:, : x.shape[1]]
        k, o = st.out_scale[m], st.offset[m]
        marker = x[:, :, MARKER] / k - o[MARKER]  # (N, T) 1 on salient frames, 0 elsewhere (no noise)
        salient = obs & (marker > 0.5 * _MARKER_VALUE)
        # (x / k - o) . d without a float64 copy of the frames
        sent = (x @ st.direction[m].astype(np.float32)).astype(np.float64) / k - o @ st.direction[m]  # (N, T)
        n = salient.sum(axis=1)
        ell = obs.sum(axis=1)
        s_mean = np.where(salient, sent, 0.0).sum(axis=1) / np.maximum(n, 1)
        if st.cue[m]:
            e = st.cue_direction[m]
            cue = (x @ e.astype(np.float32)).astype(np.float64) / k - o @ e
            q_mean = np.where(obs, cue, 0.0).sum(axis=1) / np.maximum(ell, 1)
        else:
            q_mean = np.zeros(x.shape[0])
        out[m] = {"n": n, "S": s_mean, "l": ell, "Q": q_mean}
    return out


# ---- the posterior --------------------------------------------------------------------------------


def _log_normal(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def _mixture_moments(spec: LikeSpec) -> tuple[float, float]:
    w = np.array([c[0] for c in spec.mixture])
    mu, sd = np.array([c[1] for c in spec.mixture]), np.array([c[2] for c in spec.mixture])
    mean = float(w @ mu)
    return mean, float(np.sqrt(w @ (sd**2 + mu**2) - mean**2))


def label_values(spec: LikeSpec) -> np.ndarray:
    """(J,) the label grid as the data stores it (float32)."""
    k_max = round(spec.label_max / spec.grid)
    return (np.arange(-k_max, k_max + 1) * spec.grid + 0.0).astype(np.float32)


def label_posterior(gen: Generated, stats: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    """(N, J) P(label = label_values[j] | what the model sees)."""
    spec, st = gen.spec, gen.structure
    w = np.array([c[0] for c in spec.mixture])
    mu, sd = np.array([c[1] for c in spec.mixture]), np.array([c[2] for c in spec.mixture])
    y_grid = np.linspace((mu - 7 * sd).min(), (mu + 7 * sd).max(), _GRID)  # (G,) y* in label units
    log_prior = logsumexp(np.log(w)[:, None] + _log_normal(y_grid[None, :], mu[:, None], sd[:, None] ** 2), axis=0)
    mean, std = _mixture_moments(spec)
    s_grid = (y_grid - mean) / std  # (G,)
    n = next(iter(stats.values()))["n"].shape[0]
    styles = np.array([1.0, -1.0])  # z
    log_pz = np.log(np.array([1.0 - spec.flip_prob, spec.flip_prob]))
    # log p(seen, y*, z) up to terms free of (y*, z): (N, 2, G)
    log_joint = np.broadcast_to(log_prior[None, None, :] + log_pz[None, :, None], (n, 2, _GRID)).copy()
    for m in MODALITIES:
        ms, sm = spec.modality(m), stats[m]
        has = sm["n"] > 0  # no salient frame seen: nothing about s from this modality
        var = (1.0 - ms.rho) + st.sigma[m] ** 2 / np.maximum(sm["n"], 1)  # (N,)
        sign = styles if ms.flipped else np.ones(2)
        mean_s = sign[None, :, None] * math.sqrt(ms.rho) * s_grid[None, None, :]  # (1, 2, G)
        ll = _log_normal(sm["S"][:, None, None], mean_s, var[:, None, None])
        log_joint += np.where(has[:, None, None], ll, 0.0)
        if st.cue[m]:
            seen = sm["l"] > 0
            var_q = st.sigma[m] ** 2 / np.maximum(sm["l"], 1)
            llz = _log_normal(sm["Q"][:, None], st.cue[m] * styles[None, :], var_q[:, None])  # (N, 2)
            log_joint += np.where(seen[:, None], llz, 0.0)[:, :, None]
    log_post = logsumexp(log_joint, axis=1)  # (N, G): z summed out
    post = np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))
    # P(label j | y*): the label is clip(grid-round(y* + e)), e ~ N(0, tau^2)
    k_max = round(spec.label_max / spec.grid)
    edges = (np.arange(-k_max, k_max + 2) - 0.5) * spec.grid  # (J+1,)
    edges[0], edges[-1] = -np.inf, np.inf
    cdf = ndtr((edges[None, :] - y_grid[:, None]) / spec.label_noise)  # (G, J+1)
    p_label = np.diff(cdf, axis=1)  # (G, J)
    return post @ p_label  # (N, J)


# ---- Bayes decisions and metrics ------------------------------------------------------------------


def _classes(metric: str, dataset: str, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class of each label value, mask of values that count): the metric's own classes."""
    from raymsa.metrics import SIMS_EDGES, _sims_bins

    every = np.ones(v.shape, dtype=bool)
    if dataset == "sims":
        k = {"Mult_acc_5": 5, "Mult_acc_3": 3, "Mult_acc_2": 2, "F1_score": 2}[metric]
        return _sims_bins(np.clip(v, -1.0, 1.0), SIMS_EDGES[k]), every
    if metric == "Mult_acc_7":
        return np.round(np.clip(v, -3.0, 3.0)).astype(np.int64), every
    if metric == "Mult_acc_5":
        return np.round(np.clip(v, -2.0, 2.0)).astype(np.int64), every
    if metric.startswith("Non0"):
        return (v > 0).astype(np.int64), v != 0  # samples with y == 0 are left out by the metric
    if metric.startswith("Has0"):
        return (v >= 0).astype(np.int64), every
    raise KeyError(metric)


def bayes_predictions(post: np.ndarray, values: np.ndarray, metric: str, dataset: str) -> np.ndarray:
    """(N,) the prediction that is Bayes-optimal for `metric` under the label posterior (N, J)."""
    v = values.astype(np.float64)
    if metric == "MAE":
        idx = np.argmax(np.cumsum(post, axis=1) >= 0.5 - 1e-12, axis=1)  # the posterior median
        return v[idx]
    if metric == "Corr":
        return post @ v
    cls, counts = _classes(metric, dataset, values)
    labels = np.unique(cls[counts])
    onehot = (cls[None, :] == labels[:, None]) & counts[None, :]  # (C, J)
    best = labels[np.argmax(post @ onehot.T, axis=1)]  # (N,) most probable class
    # a representative label value of each class: the metric maps it back to that class
    rep = np.array([v[np.flatnonzero(onehot[i])[0]] for i in range(labels.size)])
    return rep[np.searchsorted(labels, best)]


def ceiling_metrics(post: np.ndarray, labels: np.ndarray, spec: LikeSpec, dataset: str) -> dict[str, float]:
    from raymsa.metrics import mmsa_metrics

    values = label_values(spec)
    out = {}
    for metric in (_SIMS_METRICS if dataset == "sims" else _MOSI_METRICS):
        pred = bayes_predictions(post, values, metric, dataset)
        out[metric] = mmsa_metrics(pred, labels, dataset)[metric]
    return out


# ---- the ceiling over a scenario's grid -----------------------------------------------------------


def synthetic_test_split(like: str, synth_seed: int = 0, scale: float = 1.0, aligned: bool = False,
               max_eval: int | None = None, test_size: int | None = None) -> Generated:
    """The synthetic test split exactly as the dataset (like, synth_seed, scale, test_size) stores
    it, cut to the first max_eval samples as the study's evaluation cuts it."""
    gen = generate_split(like, synth_seed, "test", scale=scale, aligned=aligned, test_size=test_size)
    if max_eval is not None:
        gen.raw = {k: v[:max_eval] for k, v in gen.raw.items()}
    return gen


def valid_masks(gen: Generated) -> dict[str, np.ndarray]:
    raw = gen.raw
    lengths = {"text": raw["text_bert"][:, 1].sum(axis=1), "audio": raw["audio_lengths"],
               "vision": raw["vision_lengths"]}
    return {m: np.arange(raw[m].shape[1])[None, :] < lengths[m][:, None] for m in MODALITIES}


def ceiling_rows(gen: Generated, scenario, mask_seed: int, levels: Sequence | None = None) -> list[dict]:
    """Tidy rows (CEILING_COLUMNS) of the Bayes-optimal test metrics at each level of `scenario`
    (a raymsa.missing.ScenarioConfig), under the very masks a run with eval mask seed `mask_seed`
    is tested with: eval_missingness(valid, scenario, level, split_seed(mask_seed, 'test'))."""
    import torch

    from raymsa.missing import eval_missingness, level_key, split_seed

    if scenario.kind == "noise":
        raise DataError(f"ceiling: scenario {scenario.label!r}: the noise kind adds noise to the marker "
                        "column, which this ceiling assumes noise-free; only masking kinds are supported")
    valid = {m: torch.from_numpy(v) for m, v in valid_masks(gen).items()}
    labels = gen.raw["regression_labels"]
    dataset = gen.spec.name
    rows = []
    for level in (levels if levels is not None else scenario.levels):
        miss = eval_missingness(valid, scenario, level, split_seed(mask_seed, "test"))
        observed = {m: miss.observed[m].numpy() for m in MODALITIES}
        post = label_posterior(gen, sufficient_stats(gen, observed))
        for metric, value in ceiling_metrics(post, labels, gen.spec, dataset).items():
            rows.append({"scenario": scenario.label, "level": level_key(level), "seed": mask_seed,
                         "metric": metric, "value": value})
    return rows


def write_rows(rows: list[dict], path: str | Path) -> Path:
    """Write ceiling rows as CSV atomically (tmp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CEILING_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path

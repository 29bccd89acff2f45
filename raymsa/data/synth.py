"""The embedded synthetic default: MMSA-format data in which missingness matters as on real data.

Every study that names no data runs on this (see raymsa.data.default). The generative model, its
equations and the measured probe figures are in docs/data.md; in short, per sample n:

    y*_n ~ mixture of Gaussians            label_n = clip(grid-round(y*_n + e_n))
    s_n = standardised y*_n                s_mn = sqrt(rho_m) s_n + sqrt(1 - rho_m) v_mn
    frame t < L_mn of modality m:          x_mnt = k_m (o_m + s_mn d_m + G_m [c_n; u_mn] + sigma_m eps_mnt)

d_m a fixed unit direction, G_m a fixed mixing orthogonal to d_m, c_n content shared by all
modalities (so one modality partly predicts another), u_mn modality nuisance, eps_mnt per-frame
noise. sigma_m is set so that the frame mean over a typical length estimates s_mn well and over a
tenth of it poorly; rho_m makes text far more informative than audio or vision. Token ids carry
s_n too: sentiment words whose frequency and polarity follow it.

Same (like, seed, scale) gives byte-identical arrays on one platform: every array has its own
seeded stream, so lazily written and in-memory data agree and generation order does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymsa.data.mmsa import Deferred, mmsa_from_dict, save_mmsa
from raymsa.data.types import SPLITS, DataError, MMSAData, Split

# Bump when the generator's output changes, so cached defaults are never reused stale.
GENERATOR_VERSION = 1

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
CLS_ID, SEP_ID = 101, 102  # BERT's [CLS] / [SEP] (the same ids in the uncased and Chinese vocabs)

_CONTENT_DIM = 8  # c_n: shared across modalities
_NUISANCE_DIM = 4  # u_mn: one per modality
_CONTENT_VAR = 0.5  # per-feature variance G_m [c; u] adds (latent units)
_OFFSET_SD = 0.3
_CHUNK = 256  # samples per noise stream; fixed so the bytes do not depend on memory settings


@dataclass(frozen=True)
class ModalitySpec:
    steps: int  # padded length T
    dim: int
    median_frac: float  # median valid length as a fraction of T
    length_sd: float  # sd of log length
    min_length: int
    rho: float  # share of s_mn's variance that is the common s_n (the rest is incongruence v_mn)
    frame_term: float  # variance of the frame-mean estimate of s_mn at the median length
    out_sd: float  # rough per-feature sd of the written frames


@dataclass(frozen=True)
class LikeSpec:
    name: str
    sizes: tuple[int, int, int]  # train, valid, test
    text: ModalitySpec
    audio: ModalitySpec
    vision: ModalitySpec
    label_max: float
    grid: float
    mixture: tuple[tuple[float, float, float], ...]  # (weight, mean, sd) of y*, label units
    label_noise: float
    vocab: tuple[int, int]  # word-id range of the BERT vocab (uncased English or Chinese)
    clips_per_video: int

    def modality(self, m: str) -> ModalitySpec:
        return getattr(self, m)


# rho and frame_term are shared by all three: the field's pattern (text >> audio ~ vision) holds on
# every dataset. Lengths differ: MOSEI sentences are longer, SIMS vision is sampled coarsely.
def _text(steps: int, median_frac: float) -> ModalitySpec:
    return ModalitySpec(steps, 768, median_frac, 0.5, 3, rho=0.85, frame_term=0.25, out_sd=0.5)


def _av(steps: int, dim: int) -> ModalitySpec:
    return ModalitySpec(steps, dim, 0.45, 0.5, 4, rho=0.4, frame_term=0.9, out_sd=1.0)


LIKES: dict[str, LikeSpec] = {
    "mosi": LikeSpec(
        "mosi", (1284, 229, 686), _text(50, 0.34), _av(375, 5), _av(500, 20),
        label_max=3.0, grid=1 / 3, mixture=((0.10, 0.0, 0.3), (0.47, -1.4, 0.8), (0.43, 1.5, 0.8)),
        label_noise=0.2, vocab=(1996, 29612), clips_per_video=24,
    ),
    "mosei": LikeSpec(
        "mosei", (16326, 1871, 4659), _text(50, 0.5), _av(500, 74), _av(500, 35),
        label_max=3.0, grid=1 / 3, mixture=((0.08, 0.0, 0.3), (0.30, -1.2, 0.8), (0.62, 1.0, 0.8)),
        label_noise=0.2, vocab=(1996, 29612), clips_per_video=7,
    ),
    "sims": LikeSpec(
        "sims", (1368, 456, 457), _text(39, 0.45), _av(400, 33), _av(55, 709),
        label_max=1.0, grid=0.2, mixture=((0.06, 0.0, 0.08), (0.58, -0.5, 0.3), (0.36, 0.5, 0.3)),
        label_noise=0.06, vocab=(670, 8000), clips_per_video=38,
    ),
}

_NEUTRAL_WORDS = "i the a it was and to of that this movie you so is just really but like um they".split()
_POSITIVE_WORDS = "good great love fun best enjoyed amazing nice funny awesome".split()
_NEGATIVE_WORDS = "bad boring hate worst awful terrible stupid annoying dull waste".split()


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def split_sizes(like: str, scale: float = 1.0) -> dict[str, int]:
    """The real split sizes, shrunk by `scale` (at least 2 samples per split)."""
    spec = _like(like)
    if not (0.0 < scale <= 1.0):
        raise DataError(f"synth: scale must be in (0, 1], got {scale}")
    return {s: max(2, round(n * scale)) for s, n in zip(SPLITS, spec.sizes)}


def _like(like: str) -> LikeSpec:
    if like not in LIKES:
        raise DataError(f"synth: unknown --like {like!r}; expected one of {', '.join(LIKES)}")
    return LIKES[like]


# ---- fixed structure: directions, mixings, vocabulary ---------------------------------------------


@dataclass
class _Structure:
    direction: dict[str, np.ndarray]  # (D,) unit: where s_mn lives
    mixing: dict[str, np.ndarray]  # (D, content + nuisance), orthogonal to direction
    offset: dict[str, np.ndarray]  # (D,)
    sigma: dict[str, float]  # per-frame noise sd, latent units
    out_scale: dict[str, float]  # k_m
    positive_ids: np.ndarray
    negative_ids: np.ndarray
    neutral_ids: np.ndarray
    words: np.ndarray  # (vocab size,) a word for each id in the vocab range, for raw_text


def _structure(spec: LikeSpec, seed: int, like_index: int) -> _Structure:
    rng = _rng(seed, like_index, 0)
    direction, mixing, offset, sigma, out_scale = {}, {}, {}, {}, {}
    for m in MODALITIES:
        ms = spec.modality(m)
        d = rng.standard_normal(ms.dim)
        d /= np.linalg.norm(d)
        g = rng.standard_normal((ms.dim, _CONTENT_DIM + _NUISANCE_DIM))
        g *= math.sqrt(_CONTENT_VAR / (_CONTENT_DIM + _NUISANCE_DIM))
        g -= np.outer(d, d @ g)  # content and nuisance never masquerade as sentiment
        direction[m], mixing[m] = d, g
        offset[m] = rng.normal(0.0, _OFFSET_SD, ms.dim)
        # frame_term = sigma^2 / L_median: the frame mean's noise along d at the median length
        sigma[m] = math.sqrt(ms.frame_term * ms.median_frac * ms.steps)
        out_scale[m] = ms.out_sd / math.sqrt(sigma[m] ** 2 + _CONTENT_VAR + _OFFSET_SD**2)
    lo, hi = spec.vocab
    vocab = rng.permutation(np.arange(lo, hi))
    positive, negative = vocab[:150], vocab[150:300]
    neutral = np.sort(vocab[300:])  # sorted: low ids are the frequent ranks, as in BERT's vocab
    words = np.array([f"w{i}" for i in range(lo, hi)], dtype=object)
    words[neutral[: len(_NEUTRAL_WORDS)] - lo] = _NEUTRAL_WORDS
    words[positive - lo] = np.resize(np.array(_POSITIVE_WORDS, dtype=object), positive.size)
    words[negative - lo] = np.resize(np.array(_NEGATIVE_WORDS, dtype=object), negative.size)
    return _Structure(direction, mixing, offset, sigma, out_scale, positive, negative, neutral, words)


# ---- per-split latents ----------------------------------------------------------------------------


@dataclass
class _SplitPlan:
    index: int
    labels: np.ndarray  # (N,) float32 on the grid
    expressed: dict[str, np.ndarray]  # s_mn (N,)
    latents: dict[str, np.ndarray]  # [c_n; u_mn] (N, content + nuisance)
    lengths: dict[str, np.ndarray]  # (N,) int64
    token_ids: np.ndarray  # (N, T_l) int64, [CLS] ... [SEP], 0-padded

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def _mixture_moments(mixture: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    w = np.array([c[0] for c in mixture])
    mu, sd = np.array([c[1] for c in mixture]), np.array([c[2] for c in mixture])
    mean = float(w @ mu)
    return mean, float(np.sqrt(w @ (sd**2 + mu**2) - mean**2))


def _lengths(rng: np.random.Generator, ms: ModalitySpec, duration: np.ndarray) -> np.ndarray:
    # log length = median + sd * (shared clip duration + own jitter): a long clip is long everywhere
    z = 0.8 * duration + 0.6 * rng.standard_normal(duration.size)
    raw = np.exp(np.log(ms.median_frac * ms.steps) + ms.length_sd * z)
    return np.clip(np.round(raw), ms.min_length, ms.steps).astype(np.int64)


def _token_ids(
    rng: np.random.Generator, st: _Structure, s_text: np.ndarray, lengths: np.ndarray, steps: int
) -> np.ndarray:
    n = lengths.size
    t = np.arange(steps)
    # word rank log-uniform over the neutral vocab: a few frequent words, a long tail
    rank = np.exp(rng.uniform(0.0, np.log(st.neutral_ids.size), (n, steps))).astype(np.int64) - 1
    ids = st.neutral_ids[np.clip(rank, 0, st.neutral_ids.size - 1)]
    # strong sentiment means more sentiment words, and their polarity follows its sign
    p_word = np.minimum(0.45, 0.1 + 0.15 * np.abs(s_text))[:, None]
    is_word = rng.random((n, steps)) < p_word
    positive = rng.random((n, steps)) < 1.0 / (1.0 + np.exp(-2.0 * s_text[:, None]))
    pos = st.positive_ids[rng.integers(0, st.positive_ids.size, (n, steps))]
    neg = st.negative_ids[rng.integers(0, st.negative_ids.size, (n, steps))]
    ids = np.where(is_word, np.where(positive, pos, neg), ids)
    ids[:, 0] = CLS_ID
    ids[np.arange(n), lengths - 1] = SEP_ID
    ids[t[None, :] >= lengths[:, None]] = 0
    return ids.astype(np.int64)


def _plan(spec: LikeSpec, st: _Structure, seed: int, like_index: int, split_index: int, n: int) -> _SplitPlan:
    rng = _rng(seed, like_index, 1, split_index)
    weights = np.array([c[0] for c in spec.mixture])
    comp = rng.choice(len(spec.mixture), size=n, p=weights / weights.sum())
    mu = np.array([c[1] for c in spec.mixture])[comp]
    sd = np.array([c[2] for c in spec.mixture])[comp]
    y_star = mu + sd * rng.standard_normal(n)
    k_max = round(spec.label_max / spec.grid)
    k = np.clip(np.round((y_star + spec.label_noise * rng.standard_normal(n)) / spec.grid), -k_max, k_max)
    labels = (k * spec.grid + 0.0).astype(np.float32)  # + 0.0 turns -0.0 into 0.0
    mean, std = _mixture_moments(spec.mixture)
    s = (y_star - mean) / std
    content = rng.standard_normal((n, _CONTENT_DIM))
    duration = rng.standard_normal(n)
    expressed, latents, lengths = {}, {}, {}
    for m in MODALITIES:
        ms = spec.modality(m)
        expressed[m] = math.sqrt(ms.rho) * s + math.sqrt(1.0 - ms.rho) * rng.standard_normal(n)
        latents[m] = np.concatenate([content, rng.standard_normal((n, _NUISANCE_DIM))], axis=1)
        lengths[m] = _lengths(rng, ms, duration)
    token_ids = _token_ids(rng, st, expressed["text"], lengths["text"], spec.text.steps)
    return _SplitPlan(split_index, labels, expressed, latents, lengths, token_ids)


# ---- frames ---------------------------------------------------------------------------------------


def _frames(spec: LikeSpec, st: _Structure, plan: _SplitPlan, m: str, seed: int, like_index: int) -> np.ndarray:
    ms = spec.modality(m)
    k = st.out_scale[m]
    # per-sample part of every frame: k (o + s d + G [c; u]), summed in a fixed order (no BLAS) so
    # the bytes do not depend on the BLAS build or thread count
    base = np.empty((plan.n, ms.dim), dtype=np.float64)
    base[:] = st.offset[m]
    base += plan.expressed[m][:, None] * st.direction[m]
    for j in range(st.mixing[m].shape[1]):
        base += plan.latents[m][:, j : j + 1] * st.mixing[m][:, j]
    base = (base * k).astype(np.float32)
    out = np.zeros((plan.n, ms.steps, ms.dim), dtype=np.float32)  # (N, T, D), zero padding
    noise_sd = np.float32(st.sigma[m] * k)
    m_index = MODALITIES.index(m)
    for c, start in enumerate(range(0, plan.n, _CHUNK)):
        rng = _rng(seed, like_index, 2, plan.index, m_index, c)
        for i in range(start, min(start + _CHUNK, plan.n)):
            # straight into the sample's valid rows: no temporaries the size of the array
            frames = out[i, : plan.lengths[m][i]]  # (L, D)
            rng.standard_normal(out=frames, dtype=np.float32)
            frames *= noise_sd
            frames += base[i]
    return out


def _video_ids(rng: np.random.Generator, spec: LikeSpec, split_index: int, n: int) -> list[str]:
    n_videos = -(-n // spec.clips_per_video)
    if spec.name == "sims":
        videos = [f"video_{1000 * (split_index + 1) + v:04d}" for v in range(n_videos)]
    else:  # YouTube-like 11-character ids, as in MOSI / MOSEI
        alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
        videos = ["".join(row) for row in alphabet[rng.integers(0, alphabet.size, (n_videos, 11))]]
    clip = np.arange(n) % spec.clips_per_video + 1
    return [f"{videos[i // spec.clips_per_video]}$_${clip[i]}" for i in range(n)]


def _raw_split(spec: LikeSpec, st: _Structure, plan: _SplitPlan, seed: int, like_index: int, lazy: bool) -> dict:
    rng = _rng(seed, like_index, 3, plan.index)
    lo = spec.vocab[0]
    raw_text = [
        " ".join(st.words[row[1 : n - 1] - lo]) for row, n in zip(plan.token_ids, plan.lengths["text"])
    ]
    text_bert = np.stack(
        [plan.token_ids, (plan.token_ids != 0).astype(np.int64), np.zeros_like(plan.token_ids)], axis=1
    )
    split: dict[str, Any] = {
        "raw_text": np.array(raw_text, dtype=object),
        "id": np.array(_video_ids(rng, spec, plan.index, plan.n), dtype=object),
        "text_bert": text_bert,  # (N, 3, T): ids, attention mask, segment ids
        "audio_lengths": plan.lengths["audio"],
        "vision_lengths": plan.lengths["vision"],
        "regression_labels": plan.labels,
        # MMSA's deprecated 3-class labels: negative 0, neutral 1, positive 2
        "classification_labels": (np.sign(plan.labels) + 1).astype(np.int64),
    }
    for m in MODALITIES:

        def make(m: str = m) -> np.ndarray:
            return _frames(spec, st, plan, m, seed, like_index)

        split[m] = Deferred(make) if lazy else make()
    if spec.name == "sims":  # SIMS files carry unimodal labels too: each modality's own sentiment
        mean, std = _mixture_moments(spec.mixture)
        k_max = round(spec.label_max / spec.grid)
        for m, suffix in (("text", "T"), ("audio", "A"), ("vision", "V")):
            k = np.clip(np.round((plan.expressed[m] * std + mean) / spec.grid), -k_max, k_max)
            split[f"regression_labels_{suffix}"] = (k * spec.grid + 0.0).astype(np.float32)
    return split


def _raw(like: str, seed: int, scale: float, lazy: bool) -> dict[str, dict]:
    spec = _like(like)
    if seed < 0:
        raise DataError(f"synth: seed must be >= 0, got {seed}")
    sizes = split_sizes(like, scale)
    like_index = list(LIKES).index(like)
    st = _structure(spec, seed, like_index)
    out = {}
    for i, s in enumerate(SPLITS):
        plan = _plan(spec, st, seed, like_index, i, sizes[s])
        out[s] = _raw_split(spec, st, plan, seed, like_index, lazy)
    return out


def synthesize_raw(like: str, seed: int = 0, scale: float = 1.0) -> dict[str, dict]:
    """The synthetic dataset as the MMSA dict ({'train','valid','test'} -> dict of arrays)."""
    return _raw(like, seed, scale, lazy=False)


def synthesize(like: str, seed: int = 0, scale: float = 1.0) -> MMSAData:
    """The synthetic dataset in memory, validated exactly as a loaded file would be."""
    raw = synthesize_raw(like, seed, scale)
    return mmsa_from_dict(raw, source=f"synth:{like}:seed={seed}:scale={scale:g}", dataset=like)


def write_synth(path: str | Path, like: str, seed: int = 0, scale: float = 1.0) -> Path:
    """Write the synthetic dataset as an MMSA pickle, one feature array in memory at a time."""
    return save_mmsa(_raw(like, seed, scale, lazy=True), path)


# ---- the structure check: linear probes on frame means -------------------------------------------


def frame_means(split: Split, modality: str, keep: float = 1.0, seed: int = 0) -> np.ndarray:
    """(N, D) mean over the frames kept when each valid frame survives with probability `keep`.

    A sample with no frame kept gets a zero vector, as erasure leaves it.
    """
    x = getattr(split, modality)  # (N, T, D)
    valid = np.arange(x.shape[1])[None, :] < split.lengths(modality)[:, None]
    # key (seed, 7, m): a stream the generator never draws from
    kept = valid & (_rng(seed, 7, MODALITIES.index(modality)).random(valid.shape) < keep)
    w = kept / np.maximum(kept.sum(axis=1, keepdims=True), 1)  # (N, T)
    return np.matmul(w[:, None, :].astype(np.float32), x)[:, 0]  # (N, D)


def _ridge_fits(
    x: np.ndarray, y: np.ndarray, lambdas: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ridge solutions (x_mean, y_mean, W) for each lambda; x standardised inside W."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xs = x.std(axis=0) + 1e-6
    z = (x - xm) / xs
    evals, evecs = np.linalg.eigh(z.T @ z)
    proj = evecs.T @ (z.T @ (y - ym))
    fits = []
    for lam in lambdas:
        w = evecs @ (proj / (evals + lam * x.shape[0])[:, None])
        fits.append((xm, ym, w / xs[:, None]))
    return fits


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _features(data: MMSAData, split: str, modalities: Sequence[str], keep: float, seed: int) -> np.ndarray:
    return np.concatenate(
        [frame_means(data[split], m, keep, seed + SPLITS.index(split)) for m in modalities], axis=1
    ).astype(np.float64)


_LAMBDAS = tuple(10.0**k for k in range(-4, 3))


def _probe_predictions(data: MMSAData, modality: str, keep: float, seed: int) -> dict[str, np.ndarray]:
    feats = {s: _features(data, s, [modality], keep, seed) for s in SPLITS}
    y_valid = data["valid"].labels.astype(np.float64)
    fits = _ridge_fits(feats["train"], data["train"].labels.astype(np.float64)[:, None], _LAMBDAS)

    def predict(fit: tuple[np.ndarray, np.ndarray, np.ndarray], s: str) -> np.ndarray:
        xm, ym, w = fit
        return ((feats[s] - xm) @ w + ym)[:, 0]

    best = max(fits, key=lambda f: _corr(predict(f, "valid"), y_valid))
    return {s: predict(best, s) for s in SPLITS}


def linear_probe(data: MMSAData, modalities: Sequence[str], keep: float = 1.0, seed: int = 0) -> float:
    """Test-set Pearson r of a linear probe on frame means: how much label a modality carries.

    One ridge regression per modality (trained on train, strength picked on valid); several
    modalities are combined by least squares on valid (late fusion), which keeps the probe fair when
    a modality has about as many dims as there are samples (SIMS vision: 709). Frames are erased
    (each valid frame kept with probability `keep`) the same way in all three splits.
    """
    preds = [_probe_predictions(data, m, keep, seed) for m in modalities]
    y_valid, y_test = data["valid"].labels.astype(np.float64), data["test"].labels.astype(np.float64)
    if len(preds) == 1:
        return _corr(preds[0]["test"], y_test)

    def design(s: str) -> np.ndarray:
        return np.column_stack([p[s] for p in preds] + [np.ones(len(data[s]))])

    coef = np.linalg.lstsq(design("valid"), y_valid, rcond=None)[0]
    return _corr(design("test") @ coef, y_test)


def reconstruction_r2(data: MMSAData, target: str, sources: Sequence[str]) -> float:
    """Test R^2 of predicting `target`'s frame means from `sources`' (ridge picked on valid)."""
    x = {s: _features(data, s, sources, 1.0, 0) for s in SPLITS}
    t = {s: _features(data, s, [target], 1.0, 0) for s in SPLITS}

    def r2(fit: tuple[np.ndarray, np.ndarray, np.ndarray], s: str) -> float:
        xm, ym, w = fit
        resid = t[s] - ((x[s] - xm) @ w + ym)
        return 1.0 - float((resid**2).sum() / ((t[s] - t["train"].mean(axis=0)) ** 2).sum())

    best = max(_ridge_fits(x["train"], t["train"], _LAMBDAS), key=lambda f: r2(f, "valid"))
    return r2(best, "test")

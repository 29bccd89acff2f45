"""The embedded synthetic default: MMSA-format data on which missingness matters as on real data,
with a Bayes posterior computable from the generator's own parameters (raymsa.data.ceiling).

Every study that names no data runs on this (see raymsa.data.default). The generative model, its
knobs and their defaults are in docs/data.md; in short, per sample n:

    y*_n ~ mixture of Gaussians            label_n = clip(grid-round(y*_n + e_n))
    s_n = standardised y*_n                s_mn = sqrt(rho_m) s_n + sqrt(1 - rho_m) v_mn
    z_n = +1, or -1 with flip_prob         speaker style: flips the audio / vision read-out of s_mn
    h_mnt ~ Bernoulli(salient_frac_m)      salient frames (text: the sentiment words)
    frame t < L_mn of modality m:
        x_mnt = k_m (o_m + h_mnt (f + a_m(z_n) s_mn d_m) + beta_m z_n e_m + G_m [c_n; u_mn] + sigma_m eps_mnt)

f is feature column 0 (the marker), without noise (salient frames are identifiable, like OpenFace's binary action-unit
flags); a_m(z) = z for audio and vision, 1 for text; beta_m z shows the style in text (strongly)
and vision (weakly), so reading audio and vision right needs another modality (a cross-modal
interaction); c_n is content shared by all modalities, u_mn nuisance, both orthogonal to f, d_m
and e_m, so they are independent of everything label-relevant. Token ids follow the text frames:
sentiment words sit at the salient positions, positive iff that frame's sentiment column is
positive, so ids tell nothing the text features do not.

Same (like, seed, scale, aligned) gives byte-identical arrays on one platform: every array has its
own seeded stream, so lazily written and in-memory data agree and generation order does not matter.
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
# v1 (one sentiment direction, label-free shared content) is gone; it lives in git history.
GENERATOR_VERSION = 2

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
CLS_ID, SEP_ID = 101, 102  # BERT's [CLS] / [SEP] (the same ids in the uncased and Chinese vocabs)

# The marker is feature column 0 (noise-free, like a binary action-unit flag). Sentiment and style
# cue lie along fixed dense unit directions orthogonal to it and to each other (a single column
# would be learnt 1/sqrt(D) as fast by Adam-like optimisers); content and nuisance are orthogonal
# to all three.
MARKER = 0
_MARKER_VALUE = 1.0  # salient frames' marker (latent units, before k_m)

_CONTENT_DIM = 8  # c_n: shared across modalities
_NUISANCE_DIM = 4  # u_mn: one per modality
_CONTENT_VAR = 0.5  # per-feature variance G_m [c; u] adds (latent units)
_OFFSET_SD = 0.3
_CHUNK = 256  # samples per noise stream; fixed so the bytes do not depend on memory settings


@dataclass(frozen=True)
class ModalitySpec:
    steps: int  # padded length T (unaligned)
    dim: int
    median_frac: float  # median valid length as a fraction of T
    length_sd: float  # sd of log length
    min_length: int
    rho: float  # share of s_mn's variance that is the common s_n (the rest is incongruence v_mn)
    frame_term: float  # variance of the salient-frame mean's estimate of s_mn at the median length
    salient_frac: float  # share of frames (text: inner tokens) that carry sentiment
    word_frac: float  # text: share of inner tokens that are sentiment words (0 elsewhere)
    cue: float  # style cue strength: z is told apart with d' = 2 cue from the median length's frames
    flipped: bool  # read-out sign follows the speaker style z (audio, vision)
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
    flip_prob: float  # P(z = -1): speakers whose audio / vision read the other way
    vocab: tuple[int, int]  # word-id range of the BERT vocab (uncased English or Chinese)
    clips_per_video: int

    def modality(self, m: str) -> ModalitySpec:
        return getattr(self, m)


# The knobs are shared by all three: the field's pattern (text >> audio ~ vision) holds on every
# dataset. Lengths differ: MOSEI sentences are longer, SIMS vision is sampled coarsely.
# docs/data.md justifies each default.
def _text(steps: int, median_frac: float) -> ModalitySpec:
    return ModalitySpec(steps, 768, median_frac, 0.5, 3, rho=0.85, frame_term=0.15, salient_frac=1.0,
                        word_frac=0.3, cue=2.0, flipped=False, out_sd=0.5)


def _av(steps: int, dim: int, cue: float) -> ModalitySpec:
    return ModalitySpec(steps, dim, 0.45, 0.5, 4, rho=0.5, frame_term=0.5, salient_frac=0.1,
                        word_frac=0.0, cue=cue, flipped=True, out_sd=1.0)


def _audio(steps: int, dim: int) -> ModalitySpec:
    return _av(steps, dim, cue=0.0)


def _vision(steps: int, dim: int) -> ModalitySpec:
    return _av(steps, dim, cue=0.75)


LIKES: dict[str, LikeSpec] = {
    "mosi": LikeSpec(
        "mosi", (1284, 229, 686), _text(50, 0.34), _audio(375, 5), _vision(500, 20),
        label_max=3.0, grid=1 / 3, mixture=((0.10, 0.0, 0.3), (0.47, -1.4, 0.8), (0.43, 1.5, 0.8)),
        label_noise=0.2, flip_prob=0.3, vocab=(1996, 29612), clips_per_video=24,
    ),
    "mosei": LikeSpec(
        "mosei", (16326, 1871, 4659), _text(50, 0.5), _audio(500, 74), _vision(500, 35),
        label_max=3.0, grid=1 / 3, mixture=((0.08, 0.0, 0.3), (0.30, -1.2, 0.8), (0.62, 1.0, 0.8)),
        label_noise=0.2, flip_prob=0.3, vocab=(1996, 29612), clips_per_video=7,
    ),
    "sims": LikeSpec(
        "sims", (1368, 456, 457), _text(39, 0.45), _audio(400, 33), _vision(55, 709),
        label_max=1.0, grid=0.2, mixture=((0.06, 0.0, 0.08), (0.58, -0.5, 0.3), (0.36, 0.5, 0.3)),
        label_noise=0.06, flip_prob=0.3, vocab=(670, 8000), clips_per_video=38,
    ),
}

_NEUTRAL_WORDS = "i the a it was and to of that this movie you so is just really but like um they".split()
_POSITIVE_WORDS = "good great love fun best enjoyed amazing nice funny awesome".split()
_NEGATIVE_WORDS = "bad boring hate worst awful terrible stupid annoying dull waste".split()


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def split_sizes(like: str, scale: float = 1.0, test_size: int | None = None) -> dict[str, int]:
    """The real split sizes, shrunk by `scale` (at least 2 samples per split); `test_size` replaces
    the test split's (before scaling: a study's test set is sized for the differences it must resolve,
    docs/data.md 'Test-split size'), train and valid keep the real sizes."""
    spec = _like(like)
    if not (0.0 < scale <= 1.0):
        raise DataError(f"synth: scale must be in (0, 1], got {scale}")
    if test_size is not None and test_size < 2:
        raise DataError(f"synth: test_size must be >= 2, got {test_size}")
    sizes = list(spec.sizes) if test_size is None else [*spec.sizes[:2], test_size]
    return {s: max(2, round(n * scale)) for s, n in zip(SPLITS, sizes)}


def _like(like: str) -> LikeSpec:
    if like not in LIKES:
        raise DataError(f"synth: unknown --like {like!r}; expected one of {', '.join(LIKES)}")
    return LIKES[like]


def steps(spec: LikeSpec, m: str, aligned: bool) -> int:
    """Padded length of modality m: every modality at the text length when aligned (aligned_50)."""
    return spec.text.steps if aligned else spec.modality(m).steps


# ---- fixed structure: offsets, mixings, noise, vocabulary -----------------------------------------


@dataclass
class _Structure:
    direction: dict[str, np.ndarray]  # d_m (D,) unit, orthogonal to the marker column
    cue_direction: dict[str, np.ndarray]  # e_m (D,) unit, orthogonal to d_m and the marker column
    mixing: dict[str, np.ndarray]  # (D, content + nuisance), orthogonal to f, d_m, e_m
    offset: dict[str, np.ndarray]  # (D,)
    sigma: dict[str, float]  # per-frame noise sd, latent units
    cue: dict[str, float]  # beta_m: style cue amplitude, latent units (0: none)
    out_scale: dict[str, float]  # k_m
    positive_ids: np.ndarray
    negative_ids: np.ndarray
    neutral_ids: np.ndarray
    words: np.ndarray  # (vocab size,) a word for each id in the vocab range, for raw_text


def _median_length(spec: LikeSpec, m: str, aligned: bool) -> float:
    src = spec.text if aligned else spec.modality(m)
    return src.median_frac * src.steps


def _structure(spec: LikeSpec, seed: int, like_index: int, aligned: bool = False) -> _Structure:
    rng = _rng(seed, like_index, 0)
    direction, cue_direction, mixing, offset, sigma, cue, out_scale = {}, {}, {}, {}, {}, {}, {}
    for m in MODALITIES:
        ms = spec.modality(m)
        d = rng.standard_normal(ms.dim)
        d[MARKER] = 0.0
        d /= np.linalg.norm(d)
        e = rng.standard_normal(ms.dim)
        e[MARKER] = 0.0
        e -= d * (d @ e)
        e /= np.linalg.norm(e)
        g = rng.standard_normal((ms.dim, _CONTENT_DIM + _NUISANCE_DIM))
        g *= math.sqrt(_CONTENT_VAR / (_CONTENT_DIM + _NUISANCE_DIM))
        g[MARKER] = 0.0  # content and nuisance never masquerade as marker, sentiment or cue
        g -= np.outer(d, d @ g) + np.outer(e, e @ g)
        direction[m], cue_direction[m], mixing[m] = d, e, g
        offset[m] = rng.normal(0.0, _OFFSET_SD, ms.dim)
        median = _median_length(spec, m, aligned)
        # salient frames at the median length: salient_frac of the frames (text: of the inner tokens)
        n_salient = ms.salient_frac * (median - 2 if m == "text" else median)
        # frame_term = sigma^2 / n_salient: the salient mean's noise at the median length
        sigma[m] = math.sqrt(ms.frame_term * n_salient)
        # cue: the mean over the median length's frames tells z = +-1 apart with d' = 2 cue
        cue[m] = ms.cue * sigma[m] / math.sqrt(median)
        out_scale[m] = ms.out_sd / math.sqrt(sigma[m] ** 2 + _CONTENT_VAR + _OFFSET_SD**2)
    lo, hi = spec.vocab
    vocab = rng.permutation(np.arange(lo, hi))
    positive, negative = vocab[:150], vocab[150:300]
    neutral = np.sort(vocab[300:])  # sorted: low ids are the frequent ranks, as in BERT's vocab
    words = np.array([f"w{i}" for i in range(lo, hi)], dtype=object)
    words[neutral[: len(_NEUTRAL_WORDS)] - lo] = _NEUTRAL_WORDS
    words[positive - lo] = np.resize(np.array(_POSITIVE_WORDS, dtype=object), positive.size)
    words[negative - lo] = np.resize(np.array(_NEGATIVE_WORDS, dtype=object), negative.size)
    return _Structure(direction, cue_direction, mixing, offset, sigma, cue, out_scale, positive, negative,
                      neutral, words)


# ---- per-split latents ----------------------------------------------------------------------------


@dataclass
class _SplitPlan:
    index: int
    labels: np.ndarray  # (N,) float32 on the grid
    style: np.ndarray  # z_n (N,) +-1
    expressed: dict[str, np.ndarray]  # a_m(z) s_mn (N,): what each modality's salient frames show
    latents: dict[str, np.ndarray]  # [c_n; u_mn] (N, content + nuisance)
    lengths: dict[str, np.ndarray]  # (N,) int64
    salient: dict[str, np.ndarray]  # (N, T_m) bool, only inside the length
    text_noise: np.ndarray  # (N, T_l) the text frames' sentiment-column noise (token polarity)
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
    rng: np.random.Generator, st: _Structure, word: np.ndarray, positive: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    n, steps_ = word.shape
    t = np.arange(steps_)
    # word rank log-uniform over the neutral vocab: a few frequent words, a long tail
    rank = np.exp(rng.uniform(0.0, np.log(st.neutral_ids.size), (n, steps_))).astype(np.int64) - 1
    ids = st.neutral_ids[np.clip(rank, 0, st.neutral_ids.size - 1)]
    pos = st.positive_ids[rng.integers(0, st.positive_ids.size, (n, steps_))]
    neg = st.negative_ids[rng.integers(0, st.negative_ids.size, (n, steps_))]
    ids = np.where(word, np.where(positive, pos, neg), ids)
    ids[:, 0] = CLS_ID
    ids[np.arange(n), lengths - 1] = SEP_ID
    ids[t[None, :] >= lengths[:, None]] = 0
    return ids.astype(np.int64)


def _plan(spec: LikeSpec, st: _Structure, seed: int, like_index: int, split_index: int, n: int,
          aligned: bool = False) -> _SplitPlan:
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
    style = np.where(rng.random(n) < spec.flip_prob, -1.0, 1.0)
    content = rng.standard_normal((n, _CONTENT_DIM))
    duration = rng.standard_normal(n)
    expressed, latents, lengths, salient = {}, {}, {}, {}
    for m in MODALITIES:
        ms = spec.modality(m)
        s_m = math.sqrt(ms.rho) * s + math.sqrt(1.0 - ms.rho) * rng.standard_normal(n)
        expressed[m] = style * s_m if ms.flipped else s_m
        latents[m] = np.concatenate([content, rng.standard_normal((n, _NUISANCE_DIM))], axis=1)
        lengths[m] = _lengths(rng, ms, duration)
    if aligned:  # one frame per word: every modality has the text's length
        lengths["audio"] = lengths["vision"] = lengths["text"]
    for m in MODALITIES:
        t = np.arange(steps(spec, m, aligned))[None, :]
        inside = t < lengths[m][:, None]
        if m == "text":  # [CLS] and [SEP] are never sentiment words
            inside &= (t > 0) & (t < lengths[m][:, None] - 1)
        salient[m] = inside & (rng.random(inside.shape) < spec.modality(m).salient_frac)
    text_noise = rng.standard_normal(salient["text"].shape)
    # sentiment words: a share of the positions whose frame carries sentiment, positive iff that
    # frame's sentiment (along d) is: the ids add nothing to what the features show about s
    words = salient["text"] & (rng.random(salient["text"].shape) < spec.text.word_frac)
    frame_sentiment = salient["text"] * expressed["text"][:, None] + st.sigma["text"] * text_noise
    token_ids = _token_ids(rng, st, words, frame_sentiment > 0, lengths["text"])
    return _SplitPlan(split_index, labels, style, expressed, latents, lengths, salient, text_noise, token_ids)


# ---- frames ---------------------------------------------------------------------------------------


def _frames(spec: LikeSpec, st: _Structure, plan: _SplitPlan, m: str, seed: int, like_index: int,
            aligned: bool = False) -> np.ndarray:
    ms = spec.modality(m)
    k = st.out_scale[m]
    d = st.direction[m]
    # per-sample part of every frame: k (o + beta z e + G [c; u]), summed in a fixed order (no BLAS)
    # so the bytes do not depend on the BLAS build or thread count
    base = np.empty((plan.n, ms.dim), dtype=np.float64)
    base[:] = st.offset[m]
    for j in range(st.mixing[m].shape[1]):
        base += plan.latents[m][:, j : j + 1] * st.mixing[m][:, j]
    if st.cue[m]:
        base += (st.cue[m] * plan.style)[:, None] * st.cue_direction[m]
    base = (base * k).astype(np.float32)
    out = np.zeros((plan.n, steps(spec, m, aligned), ms.dim), dtype=np.float32)  # (N, T, D), zero padding
    noise_sd = np.float32(st.sigma[m] * k)
    marker = (k * (st.offset[m][MARKER] + _MARKER_VALUE * plan.salient[m])).astype(np.float32)  # (N, T)
    # what the salient frames show along d, latent units
    shown = plan.salient[m] * plan.expressed[m][:, None]  # (N, T)
    d32 = d.astype(np.float32)
    m_index = MODALITIES.index(m)
    for c, start in enumerate(range(0, plan.n, _CHUNK)):
        rng = _rng(seed, like_index, 2, plan.index, m_index, c)
        for i in range(start, min(start + _CHUNK, plan.n)):
            n_i = plan.lengths[m][i]
            # straight into the sample's valid rows: no temporaries the size of the array
            frames = out[i, :n_i]  # (L, D)
            rng.standard_normal(out=frames, dtype=np.float32)
            frames *= noise_sd
            if m == "text":
                # the noise along d becomes the plan's, from which the token polarity was read
                along = np.einsum("ld,d->l", frames, d32, optimize=False)  # (L,) no BLAS: fixed order
                target = k * (shown[i, :n_i] + st.sigma[m] * plan.text_noise[i, :n_i])
                frames += (target.astype(np.float32) - along)[:, None] * d32
            else:
                idx = np.flatnonzero(plan.salient[m][i, :n_i])
                frames[idx] += (k * shown[i, idx]).astype(np.float32)[:, None] * d32
            frames += base[i]
            frames[:, MARKER] = marker[i, :n_i]
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


def _raw_split(spec: LikeSpec, st: _Structure, plan: _SplitPlan, seed: int, like_index: int, lazy: bool,
               aligned: bool = False) -> dict:
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
            return _frames(spec, st, plan, m, seed, like_index, aligned)

        split[m] = Deferred(make) if lazy else make()
    if spec.name == "sims":  # SIMS files carry unimodal labels too: each modality's own sentiment
        mean, std = _mixture_moments(spec.mixture)
        k_max = round(spec.label_max / spec.grid)
        for m, suffix in (("text", "T"), ("audio", "A"), ("vision", "V")):
            k = np.clip(np.round((plan.expressed[m] * std + mean) / spec.grid), -k_max, k_max)
            split[f"regression_labels_{suffix}"] = (k * spec.grid + 0.0).astype(np.float32)
    return split


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise DataError(f"synth: seed must be >= 0, got {seed}")


def _raw(like: str, seed: int, scale: float, lazy: bool, aligned: bool = False,
         test_size: int | None = None) -> dict[str, dict]:
    spec = _like(like)
    _check_seed(seed)
    sizes = split_sizes(like, scale, test_size)
    like_index = list(LIKES).index(like)
    st = _structure(spec, seed, like_index, aligned)
    out = {}
    for i, s in enumerate(SPLITS):
        plan = _plan(spec, st, seed, like_index, i, sizes[s], aligned)
        out[s] = _raw_split(spec, st, plan, seed, like_index, lazy, aligned)
    return out


def synthesize_raw(like: str, seed: int = 0, scale: float = 1.0, aligned: bool = False,
                   test_size: int | None = None) -> dict[str, dict]:
    """The synthetic dataset as the MMSA dict ({'train','valid','test'} -> dict of arrays)."""
    return _raw(like, seed, scale, lazy=False, aligned=aligned, test_size=test_size)


def synthesize(like: str, seed: int = 0, scale: float = 1.0, aligned: bool = False,
               test_size: int | None = None) -> MMSAData:
    """The synthetic dataset in memory, validated exactly as a loaded file would be."""
    raw = synthesize_raw(like, seed, scale, aligned, test_size)
    tag = (":aligned" if aligned else "") + (f":test={test_size}" if test_size is not None else "")
    return mmsa_from_dict(raw, source=f"synth:{like}:seed={seed}:scale={scale:g}{tag}", dataset=like)


def write_synth(path: str | Path, like: str, seed: int = 0, scale: float = 1.0, aligned: bool = False,
                test_size: int | None = None) -> Path:
    """Write the synthetic dataset as an MMSA pickle, one feature array in memory at a time."""
    return save_mmsa(_raw(like, seed, scale, lazy=True, aligned=aligned, test_size=test_size), path)


@dataclass
class Generated:
    """One split straight from the generator, with what the Bayes ceiling needs to know about it."""

    spec: LikeSpec
    structure: _Structure
    aligned: bool
    raw: dict  # the MMSA split dict


def generate_split(like: str, seed: int, split: str | int, n: int | None = None, scale: float = 1.0,
                   aligned: bool = False, test_size: int | None = None) -> Generated:
    """One split of the dataset (like, seed, aligned), or fresh samples from the same structure.

    split 'train' / 'valid' / 'test' with n=None gives exactly the bytes of that split at `scale`;
    an int split index >= 3 is a stream the dataset never uses: n fresh samples (e.g. ten times a
    training split, in chunks, for an estimator that must approach the ceiling).
    """
    spec = _like(like)
    _check_seed(seed)
    like_index = list(LIKES).index(like)
    if isinstance(split, str):
        index = SPLITS.index(split)
        n = split_sizes(like, scale, test_size)[split] if n is None else n
    else:
        if split < len(SPLITS) or n is None:
            raise DataError(f"synth: a fresh stream needs a split index >= {len(SPLITS)} and n, got {split}, {n}")
        index = split
    st = _structure(spec, seed, like_index, aligned)
    plan = _plan(spec, st, seed, like_index, index, n, aligned)
    raw = _raw_split(spec, st, plan, seed, like_index, lazy=False, aligned=aligned)
    return Generated(spec, st, aligned, raw)


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

"""Observation masks for a whole split: evaluation grids and per-epoch training samplers.

Masks are built once per split (N samples) from counter-based random numbers (raymsa.missing.rng),
then sliced per batch by sample index, so nothing depends on batch size or order. For one seed the
masks are nested across levels (what is missing at 0.5 is missing at 0.9) for intra, inter, mixed
and burst. Everything is tensor ops on the device of the `valid` masks.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from raymsa.batch import MODALITIES, SHORT, SUBSETS
from raymsa.missing.rng import block_elements, hash_rows, stream_key, uniform_grid, uniform_rows
from raymsa.missing.scenarios import INTER_MAX_RATE, ScenarioConfig


@dataclass(frozen=True)
class Missingness:
    """What is observed in a whole split under one scenario level (or one training epoch)."""

    observed: dict[str, Tensor]  # modality -> bool (N, T_m): valid and kept
    noise_std: Tensor | None = None  # (N,) additive-noise scale per sample (noise kind), else None
    seed: int = 0  # key of the noise draw
    # modality -> (D_m,) feature std that noise is relative to; None: the batch's valid frames
    noise_scale: dict[str, Tensor] | None = None

    @property
    def size(self) -> int:
        return next(iter(self.observed.values())).shape[0]


# ---------------------------------------------------------------------------------------------
# Input checks


def _check_valid(valid: dict[str, Tensor]) -> tuple[int, torch.device]:
    if set(valid) != set(MODALITIES):
        raise ValueError(f"valid must map exactly {MODALITIES} to masks, got keys {sorted(valid)}")
    sizes = {m: v.shape[0] for m, v in valid.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"valid masks disagree on the number of samples: {sizes}")
    devices = {v.device for v in valid.values()}
    if len(devices) != 1:
        raise ValueError(f"valid masks live on different devices: {devices}")
    for m, v in valid.items():
        if v.dim() != 2 or v.dtype != torch.bool:
            raise ValueError(f"valid[{m!r}] must be a bool (N, T) tensor, got {tuple(v.shape)} {v.dtype}")
    return sizes[MODALITIES[0]], devices.pop()


# ---------------------------------------------------------------------------------------------
# Building blocks. `rate` is a Python float (evaluation) or an (N,) float32 tensor (training).

# _PERM_RANK[p, j]: position of modality j in drop order p (the 6 permutations of 3 modalities).
_PERM_RANK = torch.tensor([[perm.index(j) for j in range(3)] for perm in itertools.permutations(range(3))])
# _SUBSET_HAS[s, j]: does subset s (SUBSETS order) contain modality j (MODALITIES order)?
_SUBSET_HAS = torch.tensor([[any(SHORT[c] == m for c in s) for m in MODALITIES] for s in SUBSETS])


def _per_row(rate: float | Tensor) -> float | Tensor:
    return rate[:, None] if isinstance(rate, Tensor) else rate


def _stochastic_round(x: Tensor, u: Tensor) -> Tensor:
    """floor(x) + [u < frac(x)]: unbiased integer rounding, monotone in x for fixed u (nested)."""
    base = torch.floor(x)
    return (base + (u < x - base).float()).long()


def _intra_keep(valid: Tensor, rate: float | Tensor, key: int, index: Tensor) -> Tensor:
    """(N, T) bool: each valid frame kept iff its uniform u >= rate (P(kept) = 1 - rate)."""
    u = uniform_grid(key, index, valid.shape[1])  # (N, T), fixed per key -> nested across rates
    return valid & (u >= _per_row(rate))


def _inter_missing_eval(rate: float, seed: int, index: Tensor) -> Tensor:
    """(N, 3) bool: whole modalities missing so that exactly round(3rN) instances of 3N are gone.

    Every sample loses floor(3r) modalities; the round(frac(3r) N) samples first in a seeded ranking
    lose one more. Which modalities go follows a seeded per-sample drop order. Both the ranking and
    the order are fixed per seed, so the masks are nested across rates.
    """
    n = index.shape[0]
    s = min(3.0 * rate, 2.0)  # missing modalities per sample on average (<= 2: never all three)
    base = int(s)
    extra = round((s - base) * n)
    rank_key = hash_rows(stream_key(seed, "inter", "extra"), index)  # (N,)
    order = torch.argsort(rank_key, stable=True)
    k = torch.full((n,), base, dtype=torch.long, device=index.device)
    k[order[:extra]] += 1
    return _drop_first(k, seed_key=stream_key(seed, "inter", "order"), index=index)


def _inter_missing_train(rate: Tensor, key_round: int, key_order: int, index: Tensor) -> Tensor:
    """(N, 3) bool for per-sample rates: k = stochastic_round(3 r) modalities missing (E[k] = 3r)."""
    u = uniform_rows(key_round, index)
    k = _stochastic_round((3.0 * rate).clamp(max=2.0), u).clamp(max=2)
    return _drop_first(k, seed_key=key_order, index=index)


def _drop_first(k: Tensor, seed_key: int, index: Tensor) -> Tensor:
    """(N, 3) bool: the first k[i] modalities of sample i's seeded drop order are missing."""
    perm = hash_rows(seed_key, index) % 6  # (N,) one of 6 drop orders
    rank = _PERM_RANK.to(index.device)[perm]  # (N, 3)
    return rank < k[:, None]


def _burst_keep(valid: Tensor, rate: float | Tensor, key_start: int, key_round: int, index: Tensor) -> Tensor:
    """(N, T) bool: one circular run of about rate*L valid frames erased per sample (L = its length).

    The run starts at a seeded valid frame and covers stochastic_round(rate*L) valid frames
    (unbiased for short sequences); start and rounding uniform are fixed per key, so runs grow
    with the rate (nested). Works for any valid pattern, not only prefixes.
    """
    length = valid.sum(dim=1)  # (N,)
    start = (hash_rows(key_start, index) * length) >> 32  # (N,) uniform in [0, L), exact in int64
    rate_t = torch.as_tensor(rate, dtype=torch.float32, device=valid.device)
    span = _stochastic_round(rate_t * length.float(), uniform_rows(key_round, index))  # (N,)
    keep = torch.empty_like(valid)
    rows = max(1, block_elements(valid.device) // max(valid.shape[1], 1))  # (rows, T) temporaries stay in cache
    for i in range(0, valid.shape[0], rows):
        v = valid[i : i + rows]
        pos = v.long().cumsum(dim=1) - 1  # (rows, T) rank of each frame among the valid ones
        offset = torch.remainder(pos - start[i : i + rows, None], length[i : i + rows].clamp_min(1)[:, None])
        keep[i : i + rows] = v & (offset >= span[i : i + rows, None])
    return keep


def _imbalanced_missing(rate: float | Tensor, scale: dict[str, float], key: int, index: Tensor) -> Tensor:
    """(N, 3) bool: modality m missing (whole) iff u_m < rate * scale[m], never all three.

    u (N, 3) is fixed per key, so the masks are nested in the rate. Where all three would go, the
    modality that would go last as the rate grows (largest u_m / scale[m]) is kept: it is the same
    modality at every rate, which keeps the masks nested."""
    u = torch.stack([uniform_rows(stream_key(key, m), index) for m in MODALITIES], dim=1)  # (N, 3)
    w = torch.tensor([scale[m] for m in MODALITIES], dtype=torch.float32, device=index.device)  # (3,)
    r = rate[:, None] if isinstance(rate, Tensor) else rate
    missing = u < r * w[None, :]  # (N, 3)
    last = (u / w.clamp_min(1e-12)[None, :]).argmax(dim=1)  # (N,) the modality dropped last
    keep_one = missing.all(dim=1, keepdim=True) & (torch.arange(3, device=index.device)[None, :] == last[:, None])
    return missing & ~keep_one


# ---------------------------------------------------------------------------------------------
# Evaluation


def split_seed(seed: int, split: str) -> int:
    """Evaluation masks of the valid and test splits drawn from independent streams."""
    return seed * 1000 + zlib.crc32(split.encode()) % 1000


def eval_missingness(valid: dict[str, Tensor], scenario: ScenarioConfig, level, seed: int) -> Missingness:
    """Fixed, seeded masks for evaluation at one level of `scenario`.

    valid: modality -> bool (N, T_m) padding mask of the whole split. The result lives on valid's device.
    """
    n, device = _check_valid(valid)
    x = scenario.level_value(level)
    index = torch.arange(n, device=device)
    kind = scenario.kind
    observed: dict[str, Tensor] = {}
    noise_std = None

    if kind == "intra":
        for m in MODALITIES:
            observed[m] = _intra_keep(valid[m], x, stream_key(seed, "intra", m), index)
    elif kind in ("inter", "mixed"):
        inter_rate = x if kind == "inter" else scenario.mixed_inter_ratio * x
        missing = _inter_missing_eval(min(inter_rate, INTER_MAX_RATE), seed, index)  # (N, 3)
        for j, m in enumerate(MODALITIES):
            keep = valid[m] if kind == "inter" else _intra_keep(valid[m], x, stream_key(seed, "intra", m), index)
            observed[m] = keep & ~missing[:, j : j + 1]
    elif kind == "subset":
        for m in MODALITIES:
            keep = any(SHORT[c] == m for c in x)
            observed[m] = valid[m].clone() if keep else torch.zeros_like(valid[m])
    elif kind == "burst":
        for m in MODALITIES:
            observed[m] = _burst_keep(
                valid[m], x, stream_key(seed, "burst", m, "start"), stream_key(seed, "burst", m, "round"), index
            )
    elif kind == "noise":
        observed = {m: valid[m].clone() for m in MODALITIES}
        noise_std = torch.full((n,), x, dtype=torch.float32, device=device)
    elif kind == "imbalanced":
        missing = _imbalanced_missing(x, scenario.modality_scale, stream_key(seed, "imbalanced"), index)  # (N, 3)
        for j, m in enumerate(MODALITIES):
            observed[m] = valid[m] & ~missing[:, j : j + 1]
    else:  # pragma: no cover - ScenarioConfig validates kind
        raise ValueError(f"unknown missingness kind {kind!r}")
    return Missingness(observed=observed, noise_std=noise_std, seed=stream_key(seed, "noise"))


# ---------------------------------------------------------------------------------------------
# Training


def train_missingness(valid: dict[str, Tensor], scenario: ScenarioConfig, seed: int, epoch: int) -> Missingness:
    """The scenario's training sampler for one epoch: deterministic in (seed, epoch), redrawn per epoch.

    A random `train_complete_fraction` of samples stays complete; the others draw their own
    rates ~ U(0, train_max_rate) (whole-modality rates ~ U(0, 2/3 train_max_rate)); see
    docs/missingness.md for each kind. Call it in the main process, not in DataLoader workers.
    """
    n, device = _check_valid(valid)
    index = torch.arange(n, device=device)
    kind, top = scenario.kind, scenario.train_max_rate

    def key(*tags: str) -> int:
        return stream_key(seed, "train", epoch, *tags)

    complete = uniform_rows(key("complete"), index) < scenario.train_complete_fraction  # (N,)

    def rates(*tags: str, scale: float = top) -> Tensor:
        """(N,) float32 per-sample rates ~ U(0, scale), 0 for the complete samples."""
        r = uniform_rows(key("rate", *tags), index) * scale
        return torch.where(complete, torch.zeros_like(r), r)

    observed: dict[str, Tensor] = {}
    noise_std = None
    if kind == "intra":
        for m in MODALITIES:
            observed[m] = _intra_keep(valid[m], rates(m), key("intra", m), index)
    elif kind in ("inter", "mixed"):
        scale = INTER_MAX_RATE * top if kind == "inter" else scenario.mixed_inter_ratio * top
        missing = _inter_missing_train(rates("inter", scale=scale), key("inter", "round"), key("inter", "order"), index)
        for j, m in enumerate(MODALITIES):
            keep = valid[m] if kind == "inter" else _intra_keep(valid[m], rates(m), key("intra", m), index)
            observed[m] = keep & ~missing[:, j : j + 1]
    elif kind == "subset":
        choice = hash_rows(key("subset"), index) % len(SUBSETS)  # (N,) uniform over the 7 subsets
        choice = torch.where(complete, torch.full_like(choice, SUBSETS.index("lav")), choice)
        has = _SUBSET_HAS.to(device)[choice]  # (N, 3)
        for j, m in enumerate(MODALITIES):
            observed[m] = valid[m] & has[:, j : j + 1]
    elif kind == "burst":
        for m in MODALITIES:
            observed[m] = _burst_keep(valid[m], rates(m), key("burst", m, "start"), key("burst", m, "round"), index)
    elif kind == "noise":
        observed = {m: valid[m].clone() for m in MODALITIES}
        noise_std = rates("noise")
    elif kind == "imbalanced":
        # the same per-modality imbalance as the evaluation grid, at a severity ~ U(0, max) per sample
        missing = _imbalanced_missing(rates("imbalanced"), scenario.modality_scale, key("imbalanced"), index)
        for j, m in enumerate(MODALITIES):
            observed[m] = valid[m] & ~missing[:, j : j + 1]
    else:  # pragma: no cover
        raise ValueError(f"unknown missingness kind {kind!r}")
    return Missingness(observed=observed, noise_std=noise_std, seed=key("noise"))


# ---------------------------------------------------------------------------------------------
# Statistics (for tests, logs and reports)


def missing_stats(valid: dict[str, Tensor], miss: Missingness) -> dict[str, float]:
    """Realised missingness of a split.

    frame_<m>: fraction of valid frames of modality m not observed;
    modality_rate: 1 - (available modality instances) / (3N), a modality instance counting as
    available when any of its frames is observed (DiCMoR's missing rate). Samples with no valid frame
    of a modality count that instance as missing.
    """
    out: dict[str, float] = {}
    available = 0
    for m in MODALITIES:
        v, o = valid[m], miss.observed[m]
        out[f"frame_{m}"] = 1.0 - o.sum().item() / max(v.sum().item(), 1)
        available += o.any(dim=1).sum().item()
    out["modality_rate"] = 1.0 - available / (3 * miss.size)
    return out



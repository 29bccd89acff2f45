"""Apply a split's masks to one batch: zero erased frames, [UNK] erased tokens, add noise.

Pure tensor ops on the batch's device; the input batch is never modified.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from raymsa.batch import MODALITIES, UNK_ID, Batch
from raymsa.missing.masks import Missingness
from raymsa.missing.rng import normal_frames, stream_key


def feature_std(x: Tensor, valid: Tensor) -> Tensor:
    """(D,) population std of each feature over the valid frames of x (B, T, D); zeros if none.

    Computed in float32 whatever x's dtype; useful as Missingness.noise_scale when taken over a
    whole (training) split so that noise does not depend on the batch.
    """
    frames = x[valid].float()  # (n, D)
    if frames.shape[0] == 0:
        return torch.zeros(x.shape[-1], dtype=torch.float32, device=x.device)
    return frames.std(dim=0, correction=0)


def _slice_observed(obs: Tensor, index: Tensor, valid: Tensor, modality: str) -> Tensor:
    """miss.observed rows of this batch, on the batch's device, trimmed to the batch's length."""
    rows = obs.index_select(0, index.to(obs.device)).to(valid.device)  # (B, T_split)
    t_batch, t_split = valid.shape[1], rows.shape[1]
    if t_split != t_batch:
        if t_split < t_batch or rows[:, t_batch:].any():
            raise ValueError(
                f"{modality}: batch length {t_batch} does not fit the split masks of length {t_split}"
            )
        rows = rows[:, :t_batch]  # the collate trimmed padding that is never observed anyway
    return rows & valid


def _erase_tokens(text_ids: Tensor, observed: Tensor) -> Tensor:
    """(B, 3, T) ids with erased tokens set to [UNK]; [CLS] (first) and [SEP] (last attended) kept."""
    ids, attn = text_ids[:, 0], text_ids[:, 1]  # (B, T)
    attended = attn > 0
    pos = torch.arange(ids.shape[1], device=ids.device)  # (T,)
    last = torch.where(attended, pos, -1).amax(dim=1)  # (B,) position of [SEP]
    special = (pos == 0)[None, :] | (pos[None, :] == last[:, None])  # (B, T)
    erase = attended & ~observed & ~special
    new_ids = torch.where(erase, torch.full_like(ids, UNK_ID), ids)
    return torch.cat([new_ids[:, None], text_ids[:, 1:]], dim=1)  # mask and segment rows unchanged


def apply_missingness(batch: Batch, miss: Missingness, index: Tensor) -> Batch:
    """A new Batch with `miss` applied to the samples `index` (B,) of the split.

    Features are zeroed where not observed; text ids (if any) get [UNK] at erased positions except
    [CLS]/[SEP], the attention mask unchanged; `observed` is miss.observed sliced by index; with
    noise, N(0,1) * noise_std[i] * feature std is added on observed frames (text ids stay clean);
    `complete` is the input batch. Nothing of the input is modified in place.
    """
    index = torch.as_tensor(index, dtype=torch.long)
    if index.dim() != 1 or index.shape[0] != batch.size:
        raise ValueError(f"index must be (B,) = ({batch.size},), got {tuple(index.shape)}")
    device = batch.labels.device

    observed = {m: _slice_observed(miss.observed[m], index, batch.valid[m], m) for m in MODALITIES}
    feats = {}
    for m in MODALITIES:
        x = batch.features(m)  # (B, T, D)
        feats[m] = torch.where(observed[m][..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))

    if miss.noise_std is not None:
        std = miss.noise_std.index_select(0, index.to(miss.noise_std.device)).to(device).float()  # (B,)
        if bool((std > 0).any()):
            for m in MODALITIES:
                x = feats[m]
                scale = miss.noise_scale[m] if miss.noise_scale is not None else feature_std(batch.features(m), batch.valid[m])
                b_i, t_i = observed[m].nonzero(as_tuple=True)  # (n,) each: the frames that get noise
                z = normal_frames(stream_key(miss.seed, "noise", m), index.to(x.device)[b_i], t_i, x.shape[2])  # (n, D)
                noise = torch.zeros(x.shape, dtype=torch.float32, device=x.device)  # (B, T, D)
                noise[b_i, t_i] = z * std[b_i, None] * scale.to(x.device).float()[None, :]
                feats[m] = (x.float() + noise).to(x.dtype)

    text_ids = batch.text_ids
    if text_ids is not None:
        text_ids = _erase_tokens(text_ids, observed["text"].to(text_ids.device))

    complete = batch if batch.complete is None else dataclasses.replace(batch, complete=None)
    return dataclasses.replace(
        batch,
        text=feats["text"],
        audio=feats["audio"],
        vision=feats["vision"],
        valid=dict(batch.valid),
        observed=observed,
        text_ids=text_ids,
        complete=complete,
        index=index.to(device),
        extras=dict(batch.extras),
    )

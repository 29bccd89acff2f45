"""Preloaded split tensors -> Batches, with no per-sample Python work in the hot path."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from raymsa.batch import MODALITIES, Batch
from raymsa.data import Split


def _tensor(a: np.ndarray) -> Tensor:
    # Arrays from Ray's object store are read-only views of shared memory; torch warns about
    # that, but nothing here ever writes to them (batches are gathered copies).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


@dataclass
class SplitTensors:
    """One split as torch tensors sharing memory with its numpy arrays."""

    feats: dict[str, Tensor]  # modality -> (N, T, D) float32
    valid: dict[str, Tensor]  # modality -> (N, T) bool
    labels: Tensor  # (N,)
    text_ids: Tensor | None  # (N, 3, T) int64

    @classmethod
    def from_split(cls, split: Split, limit: int | None = None) -> SplitTensors:
        n = len(split) if limit is None else min(limit, len(split))
        feats, valid = {}, {}
        for m in MODALITIES:
            x = _tensor(getattr(split, m)[:n])
            lengths = _tensor(split.lengths(m)[:n])
            feats[m] = x
            valid[m] = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # (N, T)
        ids = None if split.text_bert is None else _tensor(split.text_bert[:n])
        return cls(feats, valid, _tensor(split.labels[:n]), ids)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: Tensor) -> Batch:
        """The complete (unmasked) batch of the samples at `index` (B,)."""
        valid = {m: self.valid[m][index] for m in MODALITIES}
        return Batch(
            text=self.feats["text"][index],
            audio=self.feats["audio"][index],
            vision=self.feats["vision"][index],
            valid=valid,
            observed=dict(valid),
            labels=self.labels[index],
            text_ids=None if self.text_ids is None else self.text_ids[index],
            index=index,
        )


def shard_indices(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  shuffle: bool = True) -> list[Tensor]:
    """This rank's batches for one epoch: one seeded permutation of the split, cut into global
    batches, each split evenly over the ranks (the tail that does not fill every rank is dropped
    so DDP ranks always step together)."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    per_rank = max(1, batch_size // world)
    step = per_rank * world
    batches = []
    for start in range(0, n - world + 1, step):
        chunk = order[start:start + step]
        usable = (len(chunk) // world) * world
        if usable == 0:
            break
        chunk = chunk[:usable]
        k = usable // world
        batches.append(chunk[rank * k:(rank + 1) * k])
    return batches

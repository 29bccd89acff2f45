"""The one batch type every stage passes around: data -> missing -> models -> train.

A `Batch` holds the three modalities after missingness was applied, the padding and observation
masks, the per-modality integrity (observed fraction) and, when the scenario keeps it, the complete
batch it was made from (FSRF's self-distillation and Senti-iFusion's reconstruction targets need it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
# The field writes modality sets as strings of these letters ("la" = language + audio).
SHORT: dict[str, str] = {"l": "text", "a": "audio", "v": "vision"}
SUBSETS: tuple[str, ...] = ("l", "a", "v", "la", "lv", "av", "lav")

UNK_ID = 100  # BERT's [UNK]: what an erased text token becomes (LNLN, TFR-Net)


def subset_modalities(subset: str) -> tuple[str, ...]:
    """'lv' -> ('text', 'vision'), in MODALITIES order; raises on anything but a known subset."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown modality subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    return tuple(m for m in MODALITIES if any(SHORT[c] == m for c in subset))


@dataclass
class Batch:
    text: Tensor  # (B, Tl, Dl) float32 text features (erased tokens are zero vectors)
    audio: Tensor  # (B, Ta, Da) float32
    vision: Tensor  # (B, Tv, Dv) float32
    valid: dict[str, Tensor]  # modality -> bool (B, T_m): inside the sample's length
    observed: dict[str, Tensor]  # modality -> bool (B, T_m): valid and not erased / dropped
    labels: Tensor  # (B,) float32 regression labels
    text_ids: Tensor | None = None  # (B, 3, Tl) int64: token ids, attention mask, segment ids
    complete: Batch | None = None  # the same samples before missingness, when kept
    index: Tensor | None = None  # (B,) int64 sample indices in the split (for seeded masks)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def features(self, modality: str) -> Tensor:
        return getattr(self, modality)

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    def lengths(self, modality: str) -> Tensor:
        """(B,) int64 valid length of each sample for one modality."""
        return self.valid[modality].sum(dim=1)

    @property
    def integrity(self) -> Tensor:
        """(B, 3) observed fraction of each modality (order MODALITIES): the integrity target.

        A sample with no valid frame of a modality (length 0) has integrity 0 for it.
        """
        cols = []
        for m in MODALITIES:
            n_valid = self.valid[m].sum(dim=1).clamp_min(1)
            cols.append(self.observed[m].sum(dim=1) / n_valid)
        return torch.stack(cols, dim=1).float()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def mv(x):
            return x.to(device, non_blocking=non_blocking) if isinstance(x, Tensor) else x

        return dataclasses.replace(
            self,
            text=mv(self.text),
            audio=mv(self.audio),
            vision=mv(self.vision),
            valid={k: mv(v) for k, v in self.valid.items()},
            observed={k: mv(v) for k, v in self.observed.items()},
            labels=mv(self.labels),
            text_ids=mv(self.text_ids),
            complete=None if self.complete is None else self.complete.to(device, non_blocking),
            index=mv(self.index),
            extras={k: mv(v) for k, v in self.extras.items()},
        )

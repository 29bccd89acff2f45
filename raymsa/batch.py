"""The batch types: data -> missing -> models -> train.

A `Batch` holds everything the pipeline knows of some samples after missingness was applied: the
corrupted modalities, the padding and observation masks, the labels and, when the scenario keeps
it, the complete batch it was made from. A model never receives a `Batch`. The loop splits it:

    inputs, targets = batch.split(knowledge)     # knowledge: 'unknown' (default) | 'known'
    out = model(inputs, targets)                 # training: targets feed only the losses
    out = model(inputs)                          # evaluation: nothing but what a deployed model sees

`ModelInput` is what a forward may see: corrupted features, the padding (valid) masks, token ids
with their attention mask, and only under the `known` arm the observation masks. `Targets` is what
only a loss may use: labels, the observation masks, the integrity (observed fraction) and the
complete input. Under `unknown` (the field's protocol, protocols.md section 2) asking a ModelInput
for its observation masks raises `HiddenFromModel`; the masks are not in the object at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
# The field writes modality sets as strings of these letters ("la" = language + audio).
SHORT: dict[str, str] = {"l": "text", "a": "audio", "v": "vision"}
SUBSETS: tuple[str, ...] = ("l", "a", "v", "la", "lv", "av", "lav")

UNK_ID = 100  # BERT's [UNK]: what an erased text token becomes (LNLN, TFR-Net)

Knowledge = Literal["unknown", "known"]
KNOWLEDGE: tuple[str, ...] = ("unknown", "known")


class HiddenFromModel(RuntimeError):
    """A model reached for something its input does not carry (the erasure masks under `unknown`,
    the complete input outside training)."""


def _check_knowledge(knowledge: str) -> None:
    if knowledge not in KNOWLEDGE:
        raise ValueError(f"knowledge must be one of {KNOWLEDGE}, got {knowledge!r}")


def _integrity(valid: dict[str, Tensor], observed: dict[str, Tensor]) -> Tensor:
    """(B, 3) observed fraction of each modality (order MODALITIES); 0 for a length-0 sample."""
    cols = []
    for m in MODALITIES:
        n_valid = valid[m].sum(dim=1).clamp_min(1)
        cols.append(observed[m].sum(dim=1) / n_valid)
    return torch.stack(cols, dim=1).float()


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
        return _integrity(self.valid, self.observed)

    # ---- what a model may see, and what only its losses may -----------------------------------
    def model_input(self, knowledge: Knowledge = "unknown") -> ModelInput:
        """The forward's view of this batch; the observation masks only under `known`."""
        _check_knowledge(knowledge)
        return ModelInput(text=self.text, audio=self.audio, vision=self.vision, valid=dict(self.valid),
                          text_ids=self.text_ids, knowledge=knowledge,
                          _observed=dict(self.observed) if knowledge == "known" else None)

    def targets(self, knowledge: Knowledge = "unknown") -> Targets:
        """The loss side: labels, observation masks, integrity and the complete input (as the
        model would see it under the same arm), when kept."""
        complete = None if self.complete is None else self.complete.model_input(knowledge)
        return Targets(labels=self.labels, valid=dict(self.valid), observed=dict(self.observed),
                       _complete=complete)

    def split(self, knowledge: Knowledge = "unknown") -> tuple[ModelInput, Targets]:
        return self.model_input(knowledge), self.targets(knowledge)

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


@dataclass(frozen=True)
class ModelInput:
    """What a model's forward may see (see the module docstring).

    Under `unknown` the object holds no observation mask; `observed` and `integrity` raise.
    """

    text: Tensor  # (B, Tl, Dl) corrupted text features (erased tokens are zero vectors)
    audio: Tensor  # (B, Ta, Da)
    vision: Tensor  # (B, Tv, Dv)
    valid: dict[str, Tensor]  # modality -> bool (B, T_m): padding mask (inside the sample's length)
    text_ids: Tensor | None = None  # (B, 3, Tl) int64: ids (erased -> [UNK]), attention mask, segments
    knowledge: Knowledge = "unknown"
    _observed: dict[str, Tensor] | None = None  # only under 'known'

    def __post_init__(self) -> None:
        _check_knowledge(self.knowledge)
        if (self.knowledge == "known") != (self._observed is not None):
            raise ValueError("a ModelInput carries observation masks exactly when knowledge is 'known'")

    def features(self, modality: str) -> Tensor:
        return getattr(self, modality)

    @property
    def size(self) -> int:
        return self.text.shape[0]

    @property
    def device(self) -> torch.device:
        return self.text.device

    @property
    def known(self) -> bool:
        return self.knowledge == "known"

    @property
    def observed(self) -> dict[str, Tensor]:
        """modality -> bool (B, T_m) observation masks; only under the `known` arm."""
        if self._observed is None:
            raise HiddenFromModel(
                "the observation (erasure) masks are hidden from the model: missingness is 'unknown' "
                "(the field's protocol); a model may read them only when the scenario sets knowledge: known")
        return self._observed

    @property
    def integrity(self) -> Tensor:
        """(B, 3) true observed fractions; only under the `known` arm (else estimate them)."""
        return _integrity(self.valid, self.observed)

    def attend(self, modality: str) -> Tensor:
        """(B, T_m) bool: the frames a model may use as attention keys and pool over: the observed
        ones under `known`, every valid one (erased frames included, as zeros) under `unknown`."""
        return self._observed[modality] if self._observed is not None else self.valid[modality]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ModelInput:
        def mv(x):
            return x.to(device, non_blocking=non_blocking) if isinstance(x, Tensor) else x

        return ModelInput(text=mv(self.text), audio=mv(self.audio), vision=mv(self.vision),
                          valid={k: mv(v) for k, v in self.valid.items()}, text_ids=mv(self.text_ids),
                          knowledge=self.knowledge,
                          _observed=None if self._observed is None else {k: mv(v) for k, v in self._observed.items()})

    def cat(self, other: ModelInput) -> ModelInput:
        """Both views stacked along the batch (one encoder pass serves both); same arm required."""
        if other.knowledge != self.knowledge:
            raise ValueError(f"cannot stack a {self.knowledge!r} input with a {other.knowledge!r} one")
        ids = None if self.text_ids is None or other.text_ids is None else torch.cat([self.text_ids, other.text_ids])
        obs = None
        if self._observed is not None:
            obs = {m: torch.cat([self._observed[m], other._observed[m]]) for m in MODALITIES}
        return ModelInput(text=torch.cat([self.text, other.text]), audio=torch.cat([self.audio, other.audio]),
                          vision=torch.cat([self.vision, other.vision]),
                          valid={m: torch.cat([self.valid[m], other.valid[m]]) for m in MODALITIES},
                          text_ids=ids, knowledge=self.knowledge, _observed=obs)


@dataclass(frozen=True)
class Targets:
    """What only a loss may use: given to a forward in training, never in evaluation."""

    labels: Tensor  # (B,) float32
    valid: dict[str, Tensor]  # modality -> bool (B, T_m)
    observed: dict[str, Tensor]  # modality -> bool (B, T_m): the true erasure masks
    _complete: ModelInput | None = None  # the same samples before missingness, when kept

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    @property
    def integrity(self) -> Tensor:
        """(B, 3) true observed fraction of each modality: the integrity target."""
        return _integrity(self.valid, self.observed)

    @property
    def present(self) -> Tensor:
        """(B, 3) float: 1 where any frame of the modality is observed."""
        return torch.stack([self.observed[m].any(dim=1) for m in MODALITIES], dim=1).float()

    @property
    def has_complete(self) -> bool:
        return self._complete is not None

    @property
    def complete(self) -> ModelInput:
        if self._complete is None:
            raise HiddenFromModel("targets.complete is missing: the complete input was not kept for this batch "
                                  "(keep it in the missingness scenario, or switch off the parts that use it)")
        return self._complete

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Targets:
        def mv(x):
            return x.to(device, non_blocking=non_blocking)

        return Targets(labels=mv(self.labels), valid={k: mv(v) for k, v in self.valid.items()},
                       observed={k: mv(v) for k, v in self.observed.items()},
                       _complete=None if self._complete is None else self._complete.to(device, non_blocking))

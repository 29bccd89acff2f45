"""Typed, validated MMSA data held as numpy arrays.

numpy (not torch) on purpose: Ray's object store shares numpy arrays between processes of a node
without copying, so every trial on a node reads one copy of the dataset (see raymsa.search).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS: tuple[str, ...] = ("train", "valid", "test")


class DataError(ValueError):
    """A data file that cannot be used as it is; the message names the file, split and key."""


@dataclass
class Split:
    text: np.ndarray  # (N, Tl, Dl) float32
    audio: np.ndarray  # (N, Ta, Da) float32
    vision: np.ndarray  # (N, Tv, Dv) float32
    text_lengths: np.ndarray  # (N,) int64
    audio_lengths: np.ndarray  # (N,) int64
    vision_lengths: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) float32
    ids: list[str] = field(default_factory=list)
    raw_text: list[str] = field(default_factory=list)
    text_bert: np.ndarray | None = None  # (N, 3, Tl) int64: ids, attention mask, segment ids

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def lengths(self, modality: str) -> np.ndarray:
        return getattr(self, f"{modality}_lengths")

    @property
    def nbytes(self) -> int:
        arrays = [self.text, self.audio, self.vision, self.labels, self.text_bert]
        return int(sum(a.nbytes for a in arrays if a is not None))


@dataclass
class MMSAData:
    """All splits of one MMSA feature file.

    `dataset` is the label convention ('mosi', 'mosei' or 'sims'): it picks the metric definitions
    (SIMS labels are in [-1, 1], MOSI/MOSEI in [-3, 3]).
    """

    splits: dict[str, Split]
    dataset: str
    source: str  # the file it came from, for messages and reports

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    @property
    def dims(self) -> dict[str, int]:
        s = self.splits["train"]
        return {"text": s.text.shape[2], "audio": s.audio.shape[2], "vision": s.vision.shape[2]}

    @property
    def seq_lens(self) -> dict[str, int]:
        s = self.splits["train"]
        return {"text": s.text.shape[1], "audio": s.audio.shape[1], "vision": s.vision.shape[1]}

    @property
    def has_text_ids(self) -> bool:
        return self.splits["train"].text_bert is not None

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.splits.values())

"""Evaluation under a scenario's grid with fixed, seeded masks."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from raymsa.metrics import METRIC_DIRECTION, mmsa_metrics
from raymsa.batch import MODALITIES
from raymsa.missing import Missingness, ScenarioConfig, apply_missingness, eval_missingness, feature_std
from raymsa.train.batches import SplitTensors


def level_key(level: float | str) -> str:
    """A level as stored in results: '0.3', 'la'."""
    return level if isinstance(level, str) else f"{float(level):g}"


def split_seed(seed: int, split: str) -> int:
    """Evaluation masks of the valid and test splits drawn from independent streams."""
    return seed * 1000 + zlib.crc32(split.encode()) % 1000


def noise_scale(train: SplitTensors) -> dict:
    """Per-feature std of the training split: the unit of the noise scenario's levels, so the
    noise a sample gets never depends on the batch it is in."""
    return {m: feature_std(train.feats[m], train.valid[m]) for m in MODALITIES}


class GridEvaluator:
    """Masks for every level of a scenario, drawn once per (split, seed) and reused every epoch."""

    def __init__(self, tensors: SplitTensors, scenario: ScenarioConfig, seed: int,
                 levels: Sequence[float | str] | None = None, scale: dict | None = None):
        self.tensors = tensors
        self.scenario = scenario
        self.levels = list(levels if levels is not None else scenario.levels)
        self.masks: dict[str, Missingness] = {}
        for lv in self.levels:
            miss = eval_missingness(tensors.valid, scenario, lv, seed)
            if scale is not None:
                miss = dataclasses.replace(miss, noise_scale=scale)
            self.masks[level_key(lv)] = miss

    @torch.no_grad()
    def predict(self, model: nn.Module, miss: Missingness, batch_size: int, device: torch.device,
                amp: bool = False) -> np.ndarray:
        preds = []
        n = len(self.tensors)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            batch = apply_missingness(self.tensors.batch(idx), miss, idx)
            batch.complete = None  # evaluation never sees the complete input
            batch = batch.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                enabled=amp and device.type == "cuda"):
                out = model(batch)
            preds.append(out["pred"].float().cpu())
        return torch.cat(preds).numpy()

    def evaluate(self, model: nn.Module, dataset: str, batch_size: int, device: torch.device,
                 amp: bool = False) -> dict[str, dict[str, float]]:
        """{level: {metric: value}} for every level of the grid."""
        was_training = model.training
        model.eval()
        labels = self.tensors.labels.numpy()
        try:
            return {key: mmsa_metrics(self.predict(model, miss, batch_size, device, amp), labels, dataset)
                    for key, miss in self.masks.items()}
        finally:
            model.train(was_training)


def grid_mean(results: dict[str, dict[str, float]], metric: str) -> float:
    """Mean of one metric over the levels of a grid (NaN if any level is NaN)."""
    values = [r[metric] for r in results.values()]
    return float(np.mean(values)) if values else math.nan


def is_better(metric: str, new: float, old: float | None) -> bool:
    if old is None or math.isnan(old):
        return not math.isnan(new)
    if math.isnan(new):
        return False
    return new > old if METRIC_DIRECTION[metric] else new < old

"""Evaluation under a scenario's grid with fixed, seeded masks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from raymsa.metrics import METRIC_DIRECTION, mmsa_metrics
from raymsa.batch import MODALITIES, Batch
from raymsa.models.losses import mean_pairwise_cosine
from raymsa.missing import Missingness, ScenarioConfig, apply_missingness, eval_missingness, feature_std, level_key
from raymsa.train.batches import SplitTensors


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

    def batches(self, miss: Missingness, batch_size: int, device: torch.device) -> Iterator[Batch]:
        """The split under `miss`, batch by batch, on `device`; the complete input dropped."""
        n = len(self.tensors)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            batch = apply_missingness(self.tensors.batch(idx), miss, idx)
            batch.complete = None  # evaluation never sees the complete input
            yield batch.to(device, non_blocking=True)

    @torch.no_grad()
    def predict(self, model: nn.Module, miss: Missingness, batch_size: int, device: torch.device,
                amp: bool = False) -> np.ndarray:
        preds = [predict_batch(model, batch, self.scenario.knowledge, amp).cpu()
                 for batch in self.batches(miss, batch_size, device)]
        return torch.cat(preds).numpy()

    @torch.no_grad()
    def diagnose(self, model: nn.Module, batch_size: int, device: torch.device) -> dict[str, dict[str, float]]:
        """{level: {metric: value}} of the model's inner workings (docs/models.md, diagnostics):
        integrity-estimation error and bias per modality, dominant-modality shares, and the mean
        cosine between samples of each factorized part. {} for a model without diagnostics."""
        was_training = model.training
        model.eval()
        out: dict[str, dict[str, float]] = {}
        try:
            for key, miss in self.masks.items():
                parts: dict[str, list[Tensor]] = {}
                truth, labels = [], []
                for batch in self.batches(miss, batch_size, device):
                    d = model.diagnose(batch.model_input(self.scenario.knowledge))
                    if not d:
                        return {}  # a model without diagnostics: no pass over the rest of the grid
                    for k, v in d.items():
                        parts.setdefault(k, []).append(v.float().cpu())
                    truth.append(batch.integrity.cpu())  # the measurement may use the truth; the model did not
                    labels.append(batch.labels.cpu())
                if parts:
                    out[key] = summarise_diagnostics({k: torch.cat(v) for k, v in parts.items()}, torch.cat(truth),
                                                     torch.cat(labels))
        finally:
            model.train(was_training)
        return out

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


DIAG_PREFIX = "diag/"  # metric names of diagnostic rows in eval.csv


def predict_batch(model: nn.Module, batch: Batch, knowledge: str, amp: bool = False) -> Tensor:
    """(B,) float32 predictions for one batch as an evaluation makes them: the model gets the model
    input of the arm (`knowledge`) and nothing else, no targets."""
    device = batch.labels.device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        out = model(batch.model_input(knowledge))
    return out["pred"].float()


def summarise_diagnostics(parts: dict[str, Tensor], truth: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """Tidy diagnostic metrics (names under DIAG_PREFIX) from a whole split's per-sample outputs.

    integrity (N, 3) estimates -> integrity_mae/<m> = mean |ι̂ - ι|, integrity_bias/<m> = mean (ι̂ - ι);
    dominance (N, 3) weights -> dominant_share/<m> = share of samples whose largest weight is m;
    part/<name> (N, D) vectors -> cosine/<name> = mean cosine between different samples (collapse: ~1);
    readout/<name> (N,) scores -> label_r2/<name> = squared correlation with the labels over the split."""
    res: dict[str, float] = {}
    if "integrity" in parts:
        err = parts["integrity"] - truth  # (N, 3)
        for i, m in enumerate(MODALITIES):
            res[f"{DIAG_PREFIX}integrity_mae/{m}"] = float(err[:, i].abs().mean())
            res[f"{DIAG_PREFIX}integrity_bias/{m}"] = float(err[:, i].mean())
    if "dominance" in parts:
        top = parts["dominance"].argmax(dim=1)  # (N,)
        for i, m in enumerate(MODALITIES):
            res[f"{DIAG_PREFIX}dominant_share/{m}"] = float((top == i).float().mean())
    for k, v in parts.items():
        if k.startswith("part/"):
            res[f"{DIAG_PREFIX}cosine/{k[5:]}"] = mean_pairwise_cosine(v)
        elif k.startswith("readout/") and labels is not None:
            r = torch.corrcoef(torch.stack([v.double(), labels.double()]))[0, 1]
            res[f"{DIAG_PREFIX}label_r2/{k[8:]}"] = float(r.pow(2).nan_to_num(0.0))
    return res


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

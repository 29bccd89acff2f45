"""Evaluation under a scenario's grid with fixed, seeded masks.

One pass serves every level of a grid (GridEvaluator.run): the split is read in chunks of samples
of similar length, each chunk cut to its longest sample, and the chunk under every level's masks
goes through the model as one batch of `eval_batch_size` rows. Cutting trailing padding does not
change a prediction: every encoder masks padded frames out of attention and pooling, and their
features are zeros, which is what the convolution pads with (tests/test_evaluate.py compares it
with the plain per-level pass, `predict`, up to float rounding). On the MOSI-like data this halves
the frames an evaluation feeds the encoders (lengths average half the padded length)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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


@contextlib.contextmanager
def unfused_attention(device: torch.device) -> Iterator[None]:
    """On the CPU, evaluation without torch's fused inference path of nn.TransformerEncoderLayer:
    at these shapes its masked softmax costs more than the ordinary path through
    scaled_dot_product_attention (an eval forward at MOSI shapes, batch 64, 1 thread, one microbenchmark: late_fusion
    0.94 -> 0.77 ms per sample, fsrf 1.0 -> 0.8; the same predictions to ~1e-6). Training never takes
    the fused path, so evaluation now runs the kernels training does. Left on elsewhere (GPU)."""
    if device.type != "cpu":
        yield
        return
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


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
        # samples ordered by length (mean over modalities of length / padded length), so that a
        # chunk's longest sample is close to its others and cutting the padding pays
        rel = sum(tensors.valid[m].sum(1).double() / max(1, tensors.valid[m].shape[1]) for m in MODALITIES)
        self.order = torch.argsort(rel, stable=True)

    def batches(self, miss: Missingness, batch_size: int, device: torch.device) -> Iterator[Batch]:
        """The split under `miss`, batch by batch, on `device`; the complete input dropped."""
        n = len(self.tensors)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            batch = apply_missingness(self.tensors.batch(idx), miss, idx)
            batch.complete = None  # evaluation never sees the complete input
            yield batch.to(device, non_blocking=True)

    @torch.inference_mode()
    def predict(self, model: nn.Module, miss: Missingness, batch_size: int, device: torch.device,
                amp: bool = False) -> np.ndarray:
        with unfused_attention(device):
            preds = [predict_batch(model, batch, self.scenario.knowledge, amp).cpu()
                     for batch in self.batches(miss, batch_size, device)]
        return torch.cat(preds).numpy()

    @torch.inference_mode()
    def diagnose(self, model: nn.Module, batch_size: int, device: torch.device) -> dict[str, dict[str, float]]:
        """{level: {metric: value}} of the model's inner workings (docs/models.md, diagnostics):
        integrity-estimation error and bias per modality, dominant-modality shares, and the mean
        cosine between samples of each factorized part. {} for a model without diagnostics."""
        was_training = model.training
        model.eval()
        out: dict[str, dict[str, float]] = {}
        try:
            with unfused_attention(device):
                for key, miss in self.masks.items():
                    parts: dict[str, list[Tensor]] = {}
                    truth, labels = [], []
                    for batch in self.batches(miss, batch_size, device):
                        d = {k: v for k, v in model.diagnose(batch.model_input(self.scenario.knowledge)).items()
                             if k != "pred"}
                        if not d:
                            return {}  # a model without diagnostics: no pass over the rest of the grid
                        for k, v in d.items():
                            parts.setdefault(k, []).append(v.float().cpu())
                        truth.append(batch.integrity.cpu())  # the measurement may use the truth; the model did not
                        labels.append(batch.labels.cpu())
                    if parts:
                        out[key] = summarise_diagnostics({k: torch.cat(v) for k, v in parts.items()},
                                                         torch.cat(truth), torch.cat(labels))
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
            preds = self.run(model, batch_size, device, amp).preds
            return {key: mmsa_metrics(pred, labels, dataset) for key, pred in preds.items()}
        finally:
            model.train(was_training)

    @torch.inference_mode()
    def run(self, model: nn.Module, batch_size: int, device: torch.device, amp: bool = False,
            diagnose: bool = False) -> GridOutputs:
        """Predictions (and with `diagnose`, the diagnostics) of every level in one pass over the
        split; the same as `predict` per level and `diagnose` up to float rounding."""
        was_training = model.training
        model.eval()
        keys, n = list(self.masks), len(self.tensors)
        per = max(1, batch_size // max(1, len(keys)))  # samples per chunk: chunk x levels ~ batch_size rows
        preds = {k: torch.empty(n, dtype=torch.float32) for k in keys}
        parts: dict[str, dict[str, list[Tensor]]] = {k: {} for k in keys}
        truth: dict[str, list[Tensor]] = {k: [] for k in keys}
        knowledge = self.scenario.knowledge
        diag_s = 0.0
        try:
            with unfused_attention(device):
                for start in range(0, n, per):
                    idx = self.order[start:start + per]  # (b,)
                    base = trim_padding(self.tensors.batch(idx))
                    masked = []
                    for k in keys:
                        batch = apply_missingness(base, self.masks[k], idx)
                        batch.complete = None  # evaluation never sees the complete input
                        masked.append(batch)
                    big = cat_batches(masked).to(device, non_blocking=True)  # (levels x b) rows, level-major
                    b = len(idx)
                    d: dict[str, Tensor] = {}
                    pred = None
                    if diagnose:
                        t0 = time.perf_counter()
                        d = dict(model.diagnose(big.model_input(knowledge)))
                        # a model's diagnose may hand back the forward's prediction for the same input
                        # (fp32; under GPU autocast the prediction comes from the forward, as in predict)
                        pred = d.pop("pred", None)
                        if pred is not None and amp and device.type == "cuda":
                            pred = None
                        if pred is None:
                            diag_s += time.perf_counter() - t0  # a pass of its own: all of it diagnostics
                        if not d:
                            diagnose = False  # a model without diagnostics: {}
                            parts = {}
                    if pred is None:
                        pred = predict_batch(model, big, knowledge, amp)
                    pred = pred.float().cpu()  # (levels x b,)
                    for j, k in enumerate(keys):
                        preds[k][idx] = pred[j * b:(j + 1) * b]
                    if d:
                        t0 = time.perf_counter()
                        integ = big.integrity.cpu()  # the measurement may use the truth; the model did not
                        for j, k in enumerate(keys):
                            rows = slice(j * b, (j + 1) * b)
                            for name, v in d.items():
                                parts[k].setdefault(name, []).append(v[rows].float().cpu())
                            truth[k].append(integ[rows])
                        diag_s += time.perf_counter() - t0
        finally:
            model.train(was_training)
        diags: dict[str, dict[str, float]] = {}
        if diagnose and parts:
            # back to the split's order, so a diagnostic over the split reads it as `diagnose` does
            inv = torch.argsort(self.order)
            t0 = time.perf_counter()
            for k in keys:
                cat = {name: torch.cat(v)[inv] for name, v in parts[k].items()}
                diags[k] = summarise_diagnostics(cat, torch.cat(truth[k])[inv], self.tensors.labels)
            diag_s += time.perf_counter() - t0
        return GridOutputs({k: v.numpy() for k, v in preds.items()}, diags, diag_s)


@dataclass
class GridOutputs:
    preds: dict[str, np.ndarray]  # level -> (N,) float32 predictions in the split's order
    diagnostics: dict[str, dict[str, float]]  # level -> diag/ metrics; {} without diagnose or diagnostics
    diagnose_s: float = 0.0  # of the pass's seconds, those spent on the diagnostics


def trim_padding(batch: Batch) -> Batch:
    """The batch cut after its longest sample of each modality (at least one frame): what is cut is
    padding, never valid, so never observed."""
    t = {m: max(1, int(batch.valid[m].sum(1).max())) if batch.size else 1 for m in MODALITIES}
    ids = batch.text_ids
    if ids is not None:
        ids = ids[..., :t["text"]]
    return dataclasses.replace(
        batch, text=batch.text[:, :t["text"]], audio=batch.audio[:, :t["audio"]], vision=batch.vision[:, :t["vision"]],
        valid={m: v[:, :t[m]] for m, v in batch.valid.items()},
        observed={m: v[:, :t[m]] for m, v in batch.observed.items()}, text_ids=ids)


def cat_batches(batches: list[Batch]) -> Batch:
    """Batches of the same samples (same lengths) stacked along the batch dimension."""
    first = batches[0]
    cat = torch.cat
    return Batch(
        text=cat([b.text for b in batches]), audio=cat([b.audio for b in batches]),
        vision=cat([b.vision for b in batches]),
        valid={m: cat([b.valid[m] for b in batches]) for m in MODALITIES},
        observed={m: cat([b.observed[m] for b in batches]) for m in MODALITIES},
        labels=cat([b.labels for b in batches]),
        text_ids=None if first.text_ids is None else cat([b.text_ids for b in batches]),
        index=None if first.index is None else cat([b.index for b in batches]),
    )


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

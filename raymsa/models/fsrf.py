"""FSRF: Factorization-guided Semantic Recovery for Incomplete Multimodal Sentiment Analysis
(Liu, Chu, Dong, Zhang, Li, Wang; ICME 2025, arXiv 2510.16086).

Stated by the paper (abstract only, no public code): a de-redundant homogeneous-heterogeneous
factorization splits each modality into homogeneous (shared across modalities), heterogeneous
(modality-specific) and noise parts under constraint losses; a distribution-aligned
self-distillation recovers missing semantics by bidirectional knowledge transfer.

Built from its family (HRLF, CorrKD, UMDF by the same group); everything else is this project's
design and is listed in docs/models.md:

    Z_m = Enc_m(x_m)[token]                       pooled token per modality       (B, d)
    H_m = f_H(Z_m)   P_m = f_P^m(Z_m)   N_m = f_N^m(Z_m)   homogeneous (shared head, no output bias),
                                                         heterogeneous, noise
    ι̂_m = σ(logit(1 - e_m) + g_m([Z_m; e_m]))   estimated integrity (MSE to the observed fraction);
                                                 e_m = share of zero frames in the input, g_m starts at 0
    w = ι̂ (unknown missingness, the default) or the true observed fraction (the `known` arm)
    H̄ = sum_m w_m H_m / sum_m w_m
    Ẑ_m = D_m([H̄; P_m; N_m])                      recovery: the decoder rebuilds m from the shared part
    Z̃_m = w_m Z_m + (1 - w_m) Ẑ_m                 what is missing of m comes from the recovery path
    f = [H̄; f_P^l(Z̃_l); f_P^a(Z̃_a); f_P^v(Z̃_v)]  ->  multi-scale FC head  ->  ŷ
    losses: integrity (MSE of ι̂), sim (cross-modal InfoNCE of H over co-present pairs),
            var (VICReg variance of H and P), orth (subspace overlap of H/P/N),
            recon D_m([H_m;P_m;N_m]) -> Z_m(complete), trans D_n([H_m;P_n;N_n]) -> Z_n(complete),
            noise (squared batch correlation with the label of N_m's best linear read-out, a ridge
                   on running moments of N_m and the label),
            distill KL(p_complete || p_incomplete), distill_rev KL(p_incomplete || p_complete),
            align KL between the two views' batch similarity distributions, task_complete.

Training runs the complete view and the incomplete view through the same network in one stacked
batch (self-distillation: one network, two views); evaluation runs the incomplete view only.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from raymsa.batch import MODALITIES, ModelInput, Targets
from raymsa.models.base import DataSpec, MSAModel
from raymsa.models.encoders import (EncoderConfig, ModalityEncoders, erasure_evidence, integrity_prior, mlp,
                                    zero_last)
from raymsa.models.losses import (LabelReadout, cross_modal_info_nce, gaussian_bin_logits, kl_teacher_student,
                                  relation_kl, subspace_overlap, spread)
from raymsa.models.registry import register


class FSRFConfig(EncoderConfig):
    name: Literal["fsrf"] = "fsrf"
    use_factorization: bool = Field(True, description="homogeneous/heterogeneous/noise split and its losses "
                                    "(sim, orth, recon, trans, noise); off: fuse the pooled tokens directly")
    use_recovery: bool = Field(True, description="a modality's missing share is rebuilt by its decoder from the "
                               "fused homogeneous part (needs use_factorization); off: the encoder's token as it is")
    use_distill: bool = Field(True, description="prediction self-distillation between the complete and incomplete views")
    use_align: bool = Field(True, description="representation-distribution alignment between the two views")
    w_integrity: float = Field(0.5, ge=0, le=10, description="MSE of the estimated integrity (the weights of H̄ and "
                               "of the recovery under unknown missingness) to the observed fraction; search [0, 2]")
    w_sim: float = Field(0.5, ge=0, le=10, description="cross-modal InfoNCE of homogeneous parts; search [0, 2]")
    w_var: float = Field(0.5, ge=0, le=10, description="VICReg variance of homogeneous and heterogeneous parts "
                         "(against their collapse); search [0, 2]")
    tau_sim: float = Field(0.2, gt=0, le=10, description="temperature of the homogeneous InfoNCE; search log [0.05, 1]")
    w_orth: float = Field(0.1, ge=0, le=10, description="separation of homogeneous/heterogeneous/noise parts; search [0, 1]")
    w_recon: float = Field(0.5, ge=0, le=10, description="self reconstruction of the complete pooled token; search [0, 2]")
    w_trans: float = Field(0.5, ge=0, le=10, description="cross reconstruction (HRLF translation) with swapped "
                           "homogeneous parts; search [0, 2]")
    w_noise: float = Field(1.0, ge=0, le=10, description="keeps the label out of the noise part (the squared "
                           "correlation of its best linear read-out); search log [0.1, 3]")
    w_distill: float = Field(1.0, ge=0, le=10, description="complete -> incomplete prediction KL; search [0, 2]")
    w_distill_rev: float = Field(0.1, ge=0, le=10, description="incomplete -> complete prediction KL (the "
                                 "smaller reverse transfer); search [0, 0.5]")
    w_align: float = Field(0.5, ge=0, le=10, description="complete -> incomplete representation alignment; search [0, 2]")
    w_task_complete: float = Field(1.0, ge=0, le=10, description="task loss (the run's train.task_loss) on the complete view; search [0, 1]")
    tau_distill: float = Field(1.0, gt=0, le=100, description="temperature of the prediction distributions "
                               "(Gaussian bin logits -(ŷ-c)^2/tau); search log [0.1, 10]")
    tau_align: float = Field(0.1, gt=0, le=10, description="temperature of the batch similarity softmax; "
                             "search log [0.02, 1]")
    distill_bins: int = Field(7, ge=2, le=101, description="sentiment bins the prediction is spread over")


TINY = {"d_model": 16, "n_heads": 2, "enc_layers": 1, "ff_mult": 1, "audio_kernel": 4, "audio_stride": 4,
        "vision_kernel": 4, "vision_stride": 4, "bert_layers": 1, "bert_hidden": 32}


class MultiScaleHead(nn.Module):
    """FC layers narrowing 4d -> 2d -> d; the score reads all three scales (HRLF's multi-scale FC)."""

    def __init__(self, d_in: int, d: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.fc1 = nn.Sequential(nn.Linear(d_in, 2 * d), nn.GELU(), nn.Dropout(dropout))
        self.fc2 = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(d_in + 3 * d, 1)

    def forward(self, f: Tensor) -> Tensor:
        f = self.norm(f)  # (B, 4d)
        h1 = self.fc1(f)  # (B, 2d)
        h2 = self.fc2(h1)  # (B, d)
        return self.out(torch.cat([f, h1, h2], dim=-1)).squeeze(-1)  # (B,)


def _present(valid: dict[str, Tensor]) -> Tensor:
    """(B, 3) float: the modality has a valid frame (the complete view's integrity)."""
    return torch.stack([valid[m].any(dim=1) for m in MODALITIES], dim=1).float()


@register("fsrf", FSRFConfig, tiny=TINY)
class FSRF(MSAModel):
    def __init__(self, config: FSRFConfig, spec: DataSpec):
        super().__init__(config, spec)
        d, p = config.d_model, config.dropout
        self.encoders = ModalityEncoders(config, spec, n_tokens=1)
        # per-modality integrity estimate: the weights a model blind to the erasure masks must infer,
        # from the pooled token and the share of zero frames the input shows
        self.integrity = nn.ModuleDict({m: zero_last(mlp(d + 1, d, 1, p)) for m in MODALITIES})
        if config.use_factorization:
            # one homogeneous head for all modalities: the shared semantics live in one space by
            # construction. No output bias: a bias is a free constant that sim would collapse onto.
            self.homo = mlp(d, d, d, p)
            self.homo[-1].bias = None
            self.hetero = nn.ModuleDict({m: mlp(d, d, d, p) for m in MODALITIES})
            self.noise = nn.ModuleDict({m: mlp(d, d, d, p) for m in MODALITIES})
            self.decoder = nn.ModuleDict({m: mlp(3 * d, d, d, p) for m in MODALITIES})
            # the adversary of the noise penalty: the best linear read-out of the label from N_m
            self.noise_readout = nn.ModuleDict({m: LabelReadout(d) for m in MODALITIES})
        self.head = MultiScaleHead(4 * d, d, p)
        self.register_buffer("centers", torch.linspace(-spec.label_range, spec.label_range,
                                                       config.distill_bins), persistent=False)

    @property
    def needs_complete(self) -> bool:
        c = self.config
        return c.use_factorization or c.use_distill or c.use_align

    @property
    def recovers(self) -> bool:
        return self.config.use_factorization and self.config.use_recovery

    def loss_weights(self) -> dict[str, float]:
        c = self.config
        w = {"integrity": c.w_integrity}
        if c.use_factorization:
            w.update(sim=c.w_sim, var=c.w_var, orth=c.w_orth, recon=c.w_recon, trans=c.w_trans, noise=c.w_noise)
        if c.use_distill:
            w.update(distill=c.w_distill, distill_rev=c.w_distill_rev)
        if c.use_align:
            w["align"] = c.w_align
        if self.needs_complete:
            w["task_complete"] = c.w_task_complete
        return w

    def parts(self, inputs: ModelInput) -> dict[str, Any]:
        """Every intermediate of the forward (for the forward itself and for diagnostics)."""
        enc = self.encoders(inputs)
        z = {m: enc[m].tokens[:, 0] for m in MODALITIES}  # 3 x (B, d)
        ev = erasure_evidence(inputs)  # (B, 3)
        corr = torch.cat([self.integrity[m](torch.cat([z[m], ev[:, i, None]], -1))
                          for i, m in enumerate(MODALITIES)], dim=1)  # (B, 3)
        iota_hat = torch.sigmoid(integrity_prior(ev) + corr)  # (B, 3)
        # the true fractions only when the scenario grants the oracle ('known'); else the estimate
        # detached: trained by its target alone, the estimate stays an estimate (the task's gradient
        # pushed it up, towards trusting the encoder token over the recovered one: biased high)
        w = inputs.integrity if inputs.known else iota_hat.detach()  # (B, 3)
        if self.config.use_factorization:
            hom = {m: self.homo(z[m]) for m in MODALITIES}
            het = {m: self.hetero[m](z[m]) for m in MODALITIES}
            noi = {m: self.noise[m](z[m]) for m in MODALITIES}
        else:
            hom, het, noi = z, z, None
        wk = w.unsqueeze(-1)  # (B, 3, 1)
        h_bar = (torch.stack([hom[m] for m in MODALITIES], 1) * wk).sum(1) / wk.sum(1).clamp_min(1e-6)  # (B, d)
        het_f, rec = het, None
        if self.recovers:
            # the noise part enters detached: the task may read the recovery, never write label
            # content into N through it (with N attached, text's N carried the label: ridge R^2 0.58)
            rec = {m: self.decoder[m](torch.cat([h_bar, het[m], noi[m].detach()], -1)) for m in MODALITIES}
            z_t = {m: w[:, i, None] * z[m] + (1 - w[:, i, None]) * rec[m] for i, m in enumerate(MODALITIES)}
            het_f = {m: self.hetero[m](z_t[m]) for m in MODALITIES}
        f = torch.cat([h_bar] + [het_f[m] for m in MODALITIES], dim=-1)  # (B, 4d)
        return {"z": z, "iota_hat": iota_hat, "w": w, "hom": hom, "het": het, "noi": noi, "h_bar": h_bar,
                "rec": rec, "f": f}

    def diagnose(self, inputs: ModelInput) -> dict[str, Tensor]:
        p = self.parts(inputs)
        out = {"pred": self.head(p["f"]), "integrity": p["iota_hat"]}
        if self.config.use_factorization:
            for m in MODALITIES:
                out[f"part/homogeneous/{m}"] = p["hom"][m]
                out[f"part/heterogeneous/{m}"] = p["het"][m]
                out[f"readout/noise/{m}"] = self.noise_readout[m](p["noi"][m])
        return out

    def forward(self, inputs: ModelInput, targets: Targets | None = None) -> dict[str, Any]:
        targets = self.check_inputs(inputs, targets)
        two_views = self.training and self.needs_complete
        x = targets.complete.cat(inputs) if two_views else inputs  # complete rows first
        p = self.parts(x)
        pred = self.head(p["f"])  # (B',)
        if not self.training or targets is None:
            return {"pred": pred, "losses": {}}

        losses: dict[str, Tensor] = {}
        c = self.config
        if two_views:
            present = torch.cat([_present(targets.valid), targets.present])  # (2B, 3)
            iota = torch.cat([_present(targets.valid), targets.integrity])  # (2B, 3) complete view: all observed
            labels = targets.labels.repeat(2)
        else:
            present, iota, labels = targets.present, targets.integrity, targets.labels
        losses["integrity"] = F.mse_loss(p["iota_hat"], iota)
        if c.use_factorization:
            losses.update(self._factorization_losses(p, present, labels))
        if two_views:
            b = inputs.size
            pred_c, pred = pred[:b], pred[b:]
            if c.use_distill:
                p_c = gaussian_bin_logits(pred_c, self.centers, c.tau_distill)  # (B, K)
                p_i = gaussian_bin_logits(pred, self.centers, c.tau_distill)  # (B, K)
                losses["distill"] = kl_teacher_student(p_c, p_i)
                losses["distill_rev"] = kl_teacher_student(p_i, p_c)
            if c.use_align:
                losses["align"] = relation_kl(p["f"][:b], p["f"][b:], c.tau_align)
            # the loop applies its own task criterion to it, so both views train on the same one
            return {"pred": pred, "pred_complete": pred_c, "losses": losses}
        return {"pred": pred, "losses": losses}

    def _factorization_losses(self, p, present, labels) -> dict[str, Tensor]:
        """On the stacked views [complete; incomplete] (factorization implies two views in training)."""
        z, hom, het, noi = p["z"], p["hom"], p["het"], p["noi"]
        # per view: the two views of one sample are near-duplicates, not negatives of each other
        halves = (slice(0, labels.shape[0] // 2), slice(labels.shape[0] // 2, None))
        sim = sum(cross_modal_info_nce([hom[m][h] for m in MODALITIES], present[h], self.config.tau_sim)
                  for h in halves) / 2
        var = sum(spread(hom[m]) + spread(het[m]) for m in MODALITIES) / 6
        orth = sum(subspace_overlap(hom[m], het[m]) + subspace_overlap(hom[m], noi[m])
                   + subspace_overlap(het[m], noi[m]) for m in MODALITIES) / 9
        # against the joint linear read-out (each dim's correlation alone left the label readable from
        # text's N: ridge R^2 0.58 on test), and through f_N on the detached token: through the
        # encoder it made the tokens themselves lose the label (w_noise 1: test MAE 1.01 vs 0.92)
        noise = sum(self.noise_readout[m].penalty(self.noise[m](z[m].detach()), labels) for m in MODALITIES) / 3
        b = labels.shape[0] // 2
        # targets: the complete view's pooled tokens, for both halves; detached, so the encoder
        # cannot shrink its own targets to meet the decoder
        target = {m: z[m][:b].detach().repeat(2, 1) for m in MODALITIES}  # (2B, d)
        recon = sum(F.mse_loss(self.decoder[m](torch.cat([hom[m], het[m], noi[m]], -1)), target[m])
                    for m in MODALITIES) / 3
        trans = []
        for i, src in enumerate(MODALITIES):
            w = present[:, i]  # only a present source has homogeneous content worth translating
            for dst in MODALITIES:
                if dst != src:
                    rec = self.decoder[dst](torch.cat([hom[src], het[dst], noi[dst]], -1))  # (2B, d)
                    err = (rec - target[dst]).pow(2).mean(-1)  # (2B,)
                    trans.append((err * w).sum() / w.sum().clamp_min(1.0))
        return {"sim": sim, "var": var, "orth": orth, "noise": noise, "recon": recon,
                "trans": torch.stack(trans).mean()}

"""Senti-iFusion: An Integrity-centered Hierarchical Fusion Framework for Multimodal Sentiment
Analysis under Uncertain Modality Missingness (Li, Xu, Shen, Xu, Zhang, Zhang, Song; arXiv 2511.16990).

Stated by the paper (abstract only, no public code): Integrity Estimation of each modality;
Integrity-weighted Cross-modal Completion that separates consistent from modality-specific parts;
dual-depth validation with a feature-level and a semantic-level reconstruction loss;
Integrity-guided Adaptive Fusion around a per-sample dominant modality (by completeness and
quality), attention-based and multi-scale; progressive two-stage training.

Built from its family (LNLN, NeurIPS 2024); everything else is this project's design and is listed
in docs/models.md:

    E_m = Enc_m(x_m): K learned tokens T_m (B, K, d) and the shortened sequence S_m (B, T'_m, d)
    ι̂_m = σ(logit(1 - e_m) + MLP([Attn(q_m, [T_m; S_m over valid steps]); e_m]))   integrity, MSE to the
                          observed fraction (e_m: share of zero frames in the input; the MLP starts at 0)
    C_m = W_c T_m (shared, no bias)   T_m - C_m = modality-specific part
    proxy_m = Attn(Q_m, {C_n : n ≠ m}, bias log ι̂_n)                  from the others' consistent parts
    X_m = ι̂_m T_m + (1 - ι̂_m) proxy_m                                  LNLN's correction, all modalities
    feat = MSE(X_m, T_m(complete))   sem = KL(g(T_m(complete)) || g(X_m)) at tau_sem, g a fixed judge
    α = softmax((log ι̂ + tanh q(X̄)) / tau_dom)  (or its hard one-hot, straight-through)
    D = Σ_m α_m X_m;  D <- CrossBlock(D, [S_m; X_m; X̄_m]_m, bias log(1 - α_m))   x fusion_layers
    ŷ = R(mean_k D)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from raymsa.batch import MODALITIES, ModelInput, Targets
from raymsa.models.base import DataSpec, MSAModel, Stage
from raymsa.models.encoders import (NEG, CrossBlock, Encoded, EncoderConfig, ModalityEncoders, erasure_evidence,
                                    frozen_eval, integrity_prior, key_bias, mlp, zero_last)
from raymsa.models.losses import (cross_modal_info_nce, kl_teacher_student, label_bins, subspace_overlap,
                                  spread)
from raymsa.models.registry import register

M = len(MODALITIES)


class SentiIFusionConfig(EncoderConfig):
    name: Literal["senti_ifusion"] = "senti_ifusion"
    n_tokens: int = Field(8, ge=1, le=64, description="learned tokens per modality (LNLN: 8); search {4, 8, 16}")
    integrity_hidden: int = Field(64, ge=4, le=1024, description="hidden width of the integrity MLP (LNLN: 128-64-1)")
    completion_layers: int = Field(1, ge=1, le=6, description="cross-attention blocks building each proxy; search {1, 2}")
    fusion_layers: int = Field(2, ge=1, le=6, description="dominant-modality cross-attention blocks (LNLN: 3); "
                               "search {1, 2, 3}")
    dominant: Literal["soft", "hard"] = Field("soft", description="dominant modality: softmax mix, or argmax "
                                              "with a straight-through gradient")
    use_integrity: bool = Field(True, description="integrity estimation and its loss; off: every ι̂ = 0.5")
    use_completion: bool = Field(True, description="cross-modal completion and its losses (feat, sem, uni, "
                                 "consist, orth); off: X_m = T_m")
    use_adaptive_fusion: bool = Field(True, description="per-sample dominant modality; off: language always "
                                      "dominant (LNLN)")
    two_stage: bool = Field(True, description="stage 'completion' then 'joint'; off: 'joint' throughout")
    stage1_fraction: float = Field(0.3, gt=0, lt=1, description="share of epochs in stage 'completion'; search [0.1, 0.5]")
    joint_completion_scale: float = Field(0.5, ge=0, le=1, description="factor on the completion losses in "
                                          "stage 'joint' after a completion stage; search [0, 1]")
    w_integrity: float = Field(0.9, ge=0, le=10, description="integrity MSE (LNLN completeness: 0.9); search [0, 2]")
    w_feat: float = Field(0.5, ge=0, le=10, description="feature-level validation MSE; search [0, 2]")
    w_sem: float = Field(0.5, ge=0, le=10, description="semantic-level validation KL; search [0, 2]")
    w_uni: float = Field(0.1, ge=0, le=10, description="cross-entropy that anchors the semantic head on the "
                         "complete input's sentiment class; search [0, 1]")
    w_consist: float = Field(0.1, ge=0, le=10, description="cross-modal agreement of the consistent parts "
                             "(InfoNCE over co-present pairs); search [0, 1]")
    w_var: float = Field(0.5, ge=0, le=10, description="VICReg variance of the consistent parts (against their "
                         "collapse); search [0, 2]")
    tau_consist: float = Field(0.2, gt=0, le=10, description="temperature of the consistent-part InfoNCE; "
                               "search log [0.05, 1]")
    w_orth: float = Field(0.1, ge=0, le=10, description="separation of consistent and specific parts; search [0, 1]")
    tau_dom: float = Field(1.0, gt=0, le=100, description="temperature of the dominant-modality softmax; "
                           "search log [0.1, 5]")
    tau_sem: float = Field(2.0, gt=0, le=100, description="temperature of the semantic-level KL; search log [0.5, 8]")
    sem_bins: int = Field(7, ge=2, le=101, description="sentiment classes of the semantic head (7: Acc-7)")


TINY = {"d_model": 16, "n_heads": 2, "enc_layers": 1, "ff_mult": 1, "audio_kernel": 4, "audio_stride": 4,
        "vision_kernel": 4, "vision_stride": 4, "bert_layers": 1, "bert_hidden": 32, "n_tokens": 2,
        "integrity_hidden": 8, "fusion_layers": 1}

COMPLETION_LOSSES = ("feat", "sem", "uni", "consist", "var", "orth")


class IntegrityEstimator(nn.Module):
    """A learned query attends over a modality's encoding (tokens and every valid step, erased ones
    included: the encoder sees them as zero frames, which is what reveals the erasure); an MLP
    (d+1)-h-1 reads the result and the input's share of zero frames and gives the integrity logit."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, hidden: int, dropout: float):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.attn = CrossBlock(d, n_heads, ff_mult, dropout)
        self.norm = nn.LayerNorm(d)
        self.mlp = zero_last(mlp(d + 1, hidden, 1))  # a correction of the zero-frame prior, starting at 0

    def forward(self, e: Encoded, evidence: Tensor) -> Tensor:
        b, k = e.tokens.shape[:2]
        ctx = torch.cat([e.tokens, e.seq], dim=1)  # (B, K + T', d)
        bias = key_bias(torch.cat([e.valid.new_ones(b, k), e.valid], dim=1), ctx.dtype).unsqueeze(1)  # (B, 1, K + T')
        q = self.attn(self.query.expand(b, -1, -1), ctx, bias)  # (B, 1, d)
        return self.mlp(torch.cat([self.norm(q[:, 0]), evidence[:, None]], -1)).squeeze(-1)  # (B,) logit


@register("senti_ifusion", SentiIFusionConfig, tiny=TINY)
class SentiIFusion(MSAModel):
    def __init__(self, config: SentiIFusionConfig, spec: DataSpec):
        super().__init__(config, spec)
        c, d, k = config, config.d_model, config.n_tokens
        block = dict(d=d, n_heads=c.n_heads, ff_mult=c.ff_mult, dropout=c.dropout)
        self.encoders = ModalityEncoders(config, spec, n_tokens=k)
        if c.use_integrity:
            self.integrity = nn.ModuleDict({m: IntegrityEstimator(d, c.n_heads, c.ff_mult, c.integrity_hidden, c.dropout)
                                            for m in MODALITIES})
        if c.use_completion:
            # shared: consistent parts of all modalities in one space; no bias, a free constant that
            # the agreement loss would collapse every sample onto
            self.consistent = nn.Linear(d, d, bias=False)
            self.queries = nn.Parameter(torch.randn(M * k, d) * 0.02)  # K proxy queries per modality
            self.completion = nn.ModuleList([CrossBlock(**block) for _ in range(c.completion_layers)])
            self.sem_head = nn.Sequential(nn.LayerNorm(d), mlp(d, d, c.sem_bins))
            modality = torch.arange(M).repeat_interleave(k)  # (3K,) modality of each token
            self.register_buffer("same_modality", modality[:, None] == modality[None, :], persistent=False)
        if c.use_adaptive_fusion:
            self.quality = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))
        self.fusion = nn.ModuleList([CrossBlock(**block) for _ in range(c.fusion_layers)])
        self.regressor = nn.Sequential(nn.LayerNorm(d), mlp(d, d, 1, c.dropout))

    # ---- schedule and weights ----------------------------------------------------------------
    def stages(self) -> list[Stage]:
        if not self.config.two_stage:
            return [Stage("joint", 1.0)]
        f = self.config.stage1_fraction
        return [Stage("completion", f), Stage("joint", 1.0 - f)]

    @property
    def needs_complete(self) -> bool:
        return self.config.use_completion

    def loss_weights(self) -> dict[str, float]:
        c, w = self.config, {}
        if c.use_integrity:
            w["integrity"] = c.w_integrity
        if c.use_completion:
            scale = c.joint_completion_scale if c.two_stage and self.stage == "joint" else 1.0
            w.update({name: scale * getattr(c, f"w_{name}") for name in COMPLETION_LOSSES})
        return w

    # ---- forward -----------------------------------------------------------------------------
    def parts(self, inputs: ModelInput) -> dict[str, Any]:
        """Every intermediate of the forward (for the forward itself and for diagnostics)."""
        c = self.config
        enc = self.encoders(inputs)
        tok = {m: enc[m].tokens for m in MODALITIES}  # 3 x (B, K, d)
        if c.use_integrity:
            ev = erasure_evidence(inputs)  # (B, 3)
            corr = torch.stack([self.integrity[m](enc[m], ev[:, i]) for i, m in enumerate(MODALITIES)], dim=1)  # (B, 3)
            logit = integrity_prior(ev) + corr
            # ι̂ for the losses; its uses downstream are detached, so only the integrity target trains
            # the estimator (the task's gradient made it biased high)
            iota_est = torch.sigmoid(logit)
            logit = logit.detach()
            iota, log_iota = torch.sigmoid(logit), F.logsigmoid(logit)  # logsigmoid: bounded gradient at ι̂ -> 0
        else:
            iota = torch.full((inputs.size, M), 0.5, device=inputs.device)  # (B, 3)
            log_iota = iota.log()
        if c.use_completion:
            x, cons = self._complete(tok, iota, log_iota)
        else:
            x, cons = tok, None
        out = {"enc": enc, "tok": tok, "iota": iota, "iota_est": iota_est if c.use_integrity else iota,
               "x": x, "cons": cons, "alpha": None}
        if self.stage == "joint":
            out["pred"], out["alpha"] = self._fuse(x, enc, iota, log_iota)
        else:
            # stage 'completion' trains encoders, integrity and completion; the fusion waits
            out["pred"] = self.regressor(torch.stack([x[m] for m in MODALITIES], 1).mean((1, 2))).squeeze(-1)  # (B,)
        return out

    def diagnose(self, inputs: ModelInput) -> dict[str, Tensor]:
        p = self.parts(inputs)
        out = {"pred": p["pred"]}
        if self.config.use_integrity:
            out["integrity"] = p["iota"]
        if p["alpha"] is not None and self.config.use_adaptive_fusion:
            out["dominance"] = p["alpha"]
        if p["cons"] is not None:
            for m in MODALITIES:
                out[f"part/consistent/{m}"] = p["cons"][m].mean(1)
        return out

    def forward(self, inputs: ModelInput, targets: Targets | None = None) -> dict[str, Any]:
        targets = self.check_inputs(inputs, targets)
        c = self.config
        p = self.parts(inputs)
        pred = p["pred"]
        if not self.training or targets is None:
            return {"pred": pred, "losses": {}}

        losses: dict[str, Tensor] = {}
        if c.use_integrity:
            losses["integrity"] = F.mse_loss(p["iota_est"], targets.integrity)  # the true fractions: a target only
        if c.use_completion:
            losses.update(self._validation_losses(targets, p["tok"], p["x"], p["cons"]))
        return {"pred": pred, "losses": losses}

    def _complete(self, tok: dict[str, Tensor], iota: Tensor, log_iota: Tensor):
        """Integrity-weighted cross-modal completion: each modality's proxy is read from the other
        modalities' consistent parts, each key weighted by its modality's integrity."""
        k = self.config.n_tokens
        cons = {m: self.consistent(tok[m]) for m in MODALITIES}  # 3 x (B, K, d)
        keys = torch.cat([cons[m] for m in MODALITIES], dim=1)  # (B, 3K, d)
        bias = log_iota.repeat_interleave(k, dim=1).unsqueeze(1)  # (B, 1, 3K): weight ∝ ι̂ of the key's modality
        bias = bias.masked_fill(self.same_modality, NEG)  # (B, 3K, 3K): never from itself
        proxy = self.queries.expand(keys.shape[0], -1, -1)  # (B, 3K, d)
        for blk in self.completion:
            proxy = blk(proxy, keys, bias)
        x = {}
        for i, m in enumerate(MODALITIES):
            w = iota[:, i, None, None]  # (B, 1, 1)
            x[m] = w * tok[m] + (1 - w) * proxy[:, i * k:(i + 1) * k]  # (B, K, d)
        return x, cons

    def _dominance(self, x: dict[str, Tensor], iota: Tensor, log_iota: Tensor) -> tuple[Tensor, Tensor]:
        """α (B, 3) weights of the dominant modality and the key bias (B, 3) ≈ log(1 - α) that turns
        the dominant modality's attention towards the others.

        The logits add log ι̂ (not ι̂) to a bounded quality q = tanh(.) in (-1, 1): completeness scales
        the odds and quality may shift them by at most e^2, so a modality whose estimated integrity is
        below e^-2 times another's can never dominate it, however high its quality. With ι̂ added
        linearly (range 0..1) to an unbounded quality, a quality margin above 1 made one modality
        dominant for every sample, erased or not."""
        b = iota.shape[0]
        if not self.config.use_adaptive_fusion:
            alpha = F.one_hot(torch.zeros(b, dtype=torch.long, device=iota.device), M).to(iota.dtype)  # language
            return alpha, alpha * NEG
        q = torch.tanh(torch.cat([self.quality(x[m].mean(1)) for m in MODALITIES], dim=1))  # (B, 3) in (-1, 1)
        logits = (log_iota + q) / self.config.tau_dom  # (B, 3)
        alpha = logits.softmax(-1)
        # log(1 - α_m) = logsumexp over the other modalities - logsumexp over all: exact, bounded gradient
        others = logits.unsqueeze(1).expand(b, M, M).masked_fill(torch.eye(M, dtype=torch.bool, device=logits.device), NEG)
        log1m = others.logsumexp(-1) - logits.logsumexp(-1, keepdim=True)  # (B, 3)
        if self.config.dominant == "soft":
            return alpha, log1m
        hard = F.one_hot(alpha.argmax(-1), M).to(alpha.dtype)  # (B, 3)
        return hard + alpha - alpha.detach(), hard * NEG + log1m - log1m.detach()

    def _fuse(self, x: dict[str, Tensor], enc: dict[str, Encoded], iota: Tensor,
              log_iota: Tensor) -> tuple[Tensor, Tensor]:
        """Integrity-guided adaptive fusion: the dominant mix attends into every modality at three
        scales (encoder steps, completed tokens, pooled token), each modality's keys damped by
        log(1 - α_m) so that the dominant one mostly reads the others."""
        alpha, dom_bias = self._dominance(x, iota, log_iota)
        d0 = sum(alpha[:, i, None, None] * x[m] for i, m in enumerate(MODALITIES))  # (B, K, d)
        keys, bias = [], []
        for i, m in enumerate(MODALITIES):
            scales = [enc[m].seq, x[m], x[m].mean(1, keepdim=True)]  # (B, T', d), (B, K, d), (B, 1, d)
            keys += scales
            step = key_bias(enc[m].attend, d0.dtype)  # (B, T') valid steps (unknown) / observed (known)
            b_m = torch.cat([step, step.new_zeros(step.shape[0], x[m].shape[1] + 1)], dim=1)  # (B, T' + K + 1)
            bias.append(b_m + dom_bias[:, i, None])
        keys_t, bias_t = torch.cat(keys, 1), torch.cat(bias, 1).unsqueeze(1)  # (B, L, d), (B, 1, L)
        h = d0
        for blk in self.fusion:
            h = blk(h, keys_t, bias_t)
        return self.regressor(h.mean(1)).squeeze(-1), alpha  # (B,), (B, 3)

    def _validation_losses(self, targets: Targets, tok, x, cons) -> dict[str, Tensor]:
        """Dual-depth validation against the encoder's reading of the complete input (fixed targets)."""
        c = self.config
        with frozen_eval(self.encoders):
            target = {m: e.tokens for m, e in self.encoders(targets.complete).items()}  # 3 x (B, K, d)
        classes = label_bins(targets.labels, c.sem_bins, self.spec.label_range)  # (B,)
        # the semantic head judges the completion with weights it learns from `uni` alone: were the
        # KL allowed to train it, it would turn input-blind (a constant output makes the KL 0)
        judge = {k: v.detach() for k, v in self.sem_head.named_parameters()}
        feat, sem, uni, orth = [], [], [], []
        for m in MODALITIES:
            feat.append(F.mse_loss(x[m], target[m]))
            g_t = self.sem_head(target[m].mean(1))  # (B, bins)
            g_x = torch.func.functional_call(self.sem_head, judge, (x[m].mean(1),))  # (B, bins)
            # τ² keeps the gradient scale of a softened KL independent of τ (Hinton et al. 2015)
            sem.append(kl_teacher_student(g_t / c.tau_sem, g_x / c.tau_sem) * c.tau_sem ** 2)
            uni.append(F.cross_entropy(g_t, classes))
            orth.append(subspace_overlap(cons[m].mean(1), (tok[m] - cons[m]).mean(1)))
        present = targets.present  # (B, 3) loss side: which modalities truly have an observed frame
        pooled = [cons[m].mean(1) for m in MODALITIES]  # 3 x (B, d)
        consist = cross_modal_info_nce(pooled, present, c.tau_consist)
        var = torch.stack([spread(p) for p in pooled]).mean()
        return {"feat": torch.stack(feat).mean(), "sem": torch.stack(sem).mean(), "uni": torch.stack(uni).mean(),
                "consist": consist, "var": var, "orth": torch.stack(orth).mean()}

"""MulT: Multimodal Transformer for Unaligned Multimodal Language Sequences (Tsai, Bai, Liang, Kolter,
Morency, Salakhutdinov; ACL 2019). Built from the architecture of its public code (github
yaohungt/Multimodal-Transformer, as packaged in thuiar/MMSA: src/MMSA/models/singleTask/MULT.py,
src/MMSA/models/subNets/transformers_encoder/) with MMSA's MOSI hyperparameters
(src/MMSA/config/config_regression.json, "mult"); the mapping and every deliberate difference are in
docs/models.md.

    X_m = Conv1d_m(x_m)                      temporal convolution, no bias, no padding    (B, T_m', d)
    Z_{l<-a} = CM(X_l <- X_a), ...           six crossmodal transformers (query: target, key: source)
    Z_l = Mem_l([Z_{l<-a}; Z_{l<-v}])        self-attention over the concatenation       (B, T_l', 2d)
    h = [Z_l[last]; Z_a[last]; Z_v[last]]    each target's last valid step                (B, 6d)
    ŷ = Out(h + P2(drop(relu(P1(h)))))       residual projection head
No auxiliary losses: the task loss is its only objective (MulT has no loss weights to tune; its
search space is its dropouts).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from raymsa.batch import MODALITIES, ModelInput, Targets
from raymsa.models.base import DataSpec, MSAModel
from raymsa.models.encoders import NEG, EncoderConfig, key_bias, sinusoid
from raymsa.models.lnln import FrontEnd
from raymsa.models.registry import register

# MMSA's get_network: a crossmodal transformer's attention dropout follows its source modality
SOURCE_DROPOUT = {"text": "attn_dropout", "audio": "attn_dropout_a", "vision": "attn_dropout_v"}


def _p(description: str, default: float) -> Any:
    return Field(default, ge=0.0, le=0.9, description=description)


class MulTConfig(EncoderConfig):
    name: Literal["mult"] = "mult"
    # MMSA's MOSI hyperparameters as defaults
    d_model: int = Field(50, ge=8, le=1024, description="dst_feature_dim: width of every crossmodal transformer "
                         "(MMSA MOSI: 50); the memories are 2 x d_model")
    n_heads: int = Field(10, ge=1, le=16, description="attention heads (MMSA MOSI: 10)")
    enc_layers: int = Field(4, ge=1, le=8, description="nlevels: layers per crossmodal transformer (MMSA MOSI: 4); "
                            "each memory has max(nlevels, 3)")
    ff_mult: int = Field(4, ge=1, le=8, description="feed-forward width as a multiple of the width (public: 4)")
    dropout: float = _p("res_dropout: on every residual branch (MMSA MOSI: 0.0); search [0, 0.3]", 0.0)
    text_kernel: int = Field(5, ge=1, le=64, description="conv1d_kernel_size_l (MMSA MOSI: 5)")
    audio_kernel: int = Field(5, ge=1, le=64, description="conv1d_kernel_size_a (MMSA MOSI: 5)")
    audio_stride: int = Field(1, ge=1, le=64, description="audio conv stride (public: 1); >1 shortens for cost")
    vision_kernel: int = Field(5, ge=1, le=64, description="conv1d_kernel_size_v (MMSA MOSI: 5)")
    vision_stride: int = Field(1, ge=1, le=64, description="vision conv stride (public: 1); >1 shortens for cost")
    attn_dropout: float = _p("attention dropout of the blocks whose keys are text, and of the memories "
                             "(MMSA MOSI: 0.3); search [0, 0.5]", 0.3)
    attn_dropout_a: float = _p("attention dropout of the blocks whose keys are audio (MMSA MOSI: 0.2); "
                               "search [0, 0.5]", 0.2)
    attn_dropout_v: float = _p("attention dropout of the blocks whose keys are vision (MMSA MOSI: 0.0); "
                               "search [0, 0.5]", 0.0)
    relu_dropout: float = _p("dropout after the feed-forward ReLU (MMSA MOSI: 0.0); search [0, 0.3]", 0.0)
    embed_dropout: float = _p("dropout on the scaled, position-added inputs (MMSA MOSI: 0.2); search [0, 0.5]", 0.2)
    text_dropout: float = _p("dropout on the text features before the convolution (MMSA MOSI: 0.5); "
                             "search [0, 0.6]", 0.5)
    output_dropout: float = _p("dropout inside the residual head (MMSA MOSI: 0.5); search [0, 0.6]", 0.5)
    causal: bool = Field(True, description="attn_mask: MulT's future mask (query i sees keys j <= i + |Lk - Lq|; "
                         "MMSA MOSI: true)")


TINY = {"d_model": 16, "n_heads": 2, "enc_layers": 1, "text_kernel": 3, "audio_kernel": 4, "audio_stride": 4,
        "vision_kernel": 4, "vision_stride": 4, "bert_layers": 1, "bert_hidden": 32}


# ---- blocks (transformers_encoder/) --------------------------------------------------------------

def future_bias(lq: int, lk: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(Lq, Lk) NEG where key j lies after query i + |Lk - Lq| (buffered_future_mask), else 0."""
    i = torch.arange(lq, device=device)[:, None]
    j = torch.arange(lk, device=device)[None, :]
    return torch.zeros(lq, lk, device=device, dtype=dtype).masked_fill(j > i + abs(lk - lq), NEG)


class CrossLayer(nn.Module):
    """Pre-norm layer; one LayerNorm serves query, key and value (TransformerEncoderLayer); fused
    in-projection with bias (MultiheadAttention); ReLU feed-forward."""

    def __init__(self, d: int, heads: int, ff_mult: int, attn_dropout: float, relu_dropout: float, res_dropout: float):
        super().__init__()
        self.h, self.p_attn, self.p_relu, self.p_res = heads, attn_dropout, relu_dropout, res_dropout
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ff_mult * d), nn.Linear(ff_mult * d, d)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(2))

    def forward(self, x: Tensor, ctx: Tensor | None, bias: Tensor) -> Tensor:
        """x (B, Lq, d) attends ctx (B, Lk, d) (itself when None); bias (B, Lq or 1, Lk) additive."""
        b, lq, d = x.shape
        y = self.norms[0](x)
        c = y if ctx is None else self.norms[0](ctx)
        wq, wkv = self.in_proj.weight.split([d, 2 * d]), self.in_proj.bias.split([d, 2 * d])
        q = F.linear(y, wq[0], wkv[0])  # (B, Lq, d)
        k, v = F.linear(c, wq[1], wkv[1]).chunk(2, dim=-1)  # 2 x (B, Lk, d)
        q, k, v = (t.reshape(b, -1, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))  # (B, h, L, dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(1).to(q.dtype),
                                           dropout_p=self.p_attn if self.training else 0.0)
        a = self.out_proj(a.transpose(1, 2).reshape(b, lq, d))
        x = x + F.dropout(a, self.p_res, self.training)
        y = F.dropout(F.relu(self.fc1(self.norms[1](x))), self.p_relu, self.training)
        return x + F.dropout(self.fc2(y), self.p_res, self.training)


class CrossTransformer(nn.Module):
    """x * sqrt(d) + sinusoid, embedding dropout (the context too), layers, a final LayerNorm
    (TransformerEncoder). ctx None: self attention (the memories)."""

    def __init__(self, d: int, layers: int, heads: int, ff_mult: int, attn_dropout: float, config: MulTConfig):
        super().__init__()
        self.d, self.p_embed, self.causal = d, config.embed_dropout, config.causal
        self.layers = nn.ModuleList(CrossLayer(d, heads, ff_mult, attn_dropout, config.relu_dropout, config.dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def embed(self, x: Tensor) -> Tensor:
        x = x * math.sqrt(self.d) + sinusoid(x.shape[1], self.d, x.device, x.dtype)
        return F.dropout(x, self.p_embed, self.training)

    def forward(self, x: Tensor, keys: Tensor, ctx: Tensor | None = None) -> Tensor:
        """keys (B, Lk) bool: the context steps that may be attended."""
        x = self.embed(x)
        ctx = None if ctx is None else self.embed(ctx)
        lk = keys.shape[1]
        bias = key_bias(keys, x.dtype).unsqueeze(1)  # (B, 1, Lk)
        if self.causal:
            bias = bias + future_bias(x.shape[1], lk, x.device, x.dtype)  # (B, Lq, Lk)
        for layer in self.layers:
            x = layer(x, ctx, bias)
        return self.norm(x)


# ---- the model (MULT.py) -------------------------------------------------------------------------

@register("mult", MulTConfig, tiny=TINY)
class MulT(MSAModel):
    def __init__(self, config: MulTConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        d = c.d_model
        windows = {"text": (c.text_kernel, 1), "audio": (c.audio_kernel, c.audio_stride),
                   "vision": (c.vision_kernel, c.vision_stride)}
        self.encoders = FrontEnd(c, spec, windows, bias=False, pad="none")
        self.cross = nn.ModuleDict({
            f"{tgt}<-{src}": CrossTransformer(d, c.enc_layers, c.n_heads, c.ff_mult, getattr(c, SOURCE_DROPOUT[src]), c)
            for tgt in MODALITIES for src in MODALITIES if src != tgt})
        self.mem = nn.ModuleDict({m: CrossTransformer(2 * d, max(c.enc_layers, 3), c.n_heads, c.ff_mult,
                                                      c.attn_dropout, c) for m in MODALITIES})
        self.proj1, self.proj2 = nn.Linear(6 * d, 6 * d), nn.Linear(6 * d, 6 * d)
        self.out = nn.Linear(6 * d, 1)

    def features(self, inputs: ModelInput) -> Tensor:
        """(B, 6d): the memories' outputs at each target's last valid step."""
        x, valid, keys = {}, {}, {}
        for m in MODALITIES:
            feats = inputs
            if m == "text" and self.training and self.config.text_dropout:
                feats = _with_text(inputs, F.dropout(inputs.text, self.config.text_dropout, True))
            x[m], valid[m], keys[m] = self.encoders(feats, m)  # (B, T', d), 2 x (B, T')
        last = []
        for tgt in MODALITIES:
            z = torch.cat([self.cross[f"{tgt}<-{src}"](x[tgt], keys[src], x[src])
                           for src in MODALITIES if src != tgt], dim=-1)  # (B, T_tgt', 2d)
            z = self.mem[tgt](z, keys[tgt])
            # the last valid step, not the last padded one (the public code takes the last row)
            idx = (valid[tgt].sum(1) - 1).clamp_min(0)  # (B,)
            last.append(z[torch.arange(z.shape[0], device=z.device), idx])  # (B, 2d)
        return torch.cat(last, dim=-1)

    def diagnose(self, inputs: ModelInput) -> dict[str, Tensor]:
        h = self.features(inputs)
        d = self.config.d_model
        return {f"part/memory/{m}": h[:, 2 * d * i: 2 * d * (i + 1)] for i, m in enumerate(MODALITIES)}

    def forward(self, inputs: ModelInput, targets: Targets | None = None) -> dict[str, Any]:
        self.check_inputs(inputs, targets)
        h = self.features(inputs)  # (B, 6d)
        h = h + self.proj2(F.dropout(F.relu(self.proj1(h)), self.config.output_dropout, self.training))
        return {"pred": self.out(h).squeeze(-1), "losses": {}}


def _with_text(inputs: ModelInput, text: Tensor) -> ModelInput:
    return ModelInput(text=text, audio=inputs.audio, vision=inputs.vision, valid=inputs.valid,
                      text_ids=inputs.text_ids, knowledge=inputs.knowledge, _observed=inputs._observed)

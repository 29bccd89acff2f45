"""LNLN: Language-dominated Noise-resistant Learning Network (Zhang, Wang, Wang, Li, Yu, Li; "Towards
Robust Multimodal Sentiment Analysis with Incomplete Data", NeurIPS 2024). Built from the architecture
of its public code (github Haoyu-ha/LNLN: models/lnln.py, models/basic_layers.py, core/losses.py,
configs/train_mosi.yaml); our part -> their file and function, and every deliberate difference, are
listed in docs/models.md.

    H_m = Proj_m(x_m)[:8]                   8 learned tokens per modality after a ViT-style encoder (B, 8, d)
    w = sigmoid(MLP(CC(H_l)[0]))            completeness check of language (MSE to its observed fraction)
    P = PDG([H_p; H_a; H_v])[:8]            proxy dominant feature from audio and vision
    H_d = w H_l + (1 - w) P                 dominant-modality correction (DMC); w detached and the
                                            gradient reversal only on the discriminator's path by
                                            default (the public code: neither; docs/models.md)
    [H_d^0..H_d^L] = LangEnc(H_d)           language encoder, every layer's output kept
    H_hyper <- H_hyper + Hyper_i(H_d^i, H_a, H_v)   hyper-modality learning, one layer per H_d^i
    ŷ = Linear(mean(Fusion(H_hyper -> H_d^L)[1:]))  dominant-modality-based multimodal learning
    losses: cc (completeness MSE), adv (CE of the effectiveness discriminator between H_d and the
            complete language tokens; the proxy learns against it through the GRL),
            rec (MSE of Rec_m(H_m) to the complete input's tokens), and the task loss (the loop's).

Training runs the complete view and the incomplete view through the same feature extractors in one
stacked batch (the public code runs them one after the other with the same weights); evaluation
runs the incomplete view only.
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
from raymsa.models.encoders import EncoderConfig, ModalityEncoders, build_bert, key_bias, window_proj
from raymsa.config import ConfigError
from raymsa.models.registry import register


class LNLNConfig(EncoderConfig):
    name: Literal["lnln"] = "lnln"
    # the public MOSI configuration (configs/train_mosi.yaml) as defaults
    d_model: int = Field(128, ge=8, le=1024, description="hidden_dims of every module (public MOSI: 128)")
    n_heads: int = Field(8, ge=1, le=16, description="attention heads (public: 8)")
    enc_layers: int = Field(2, ge=1, le=8, description="depth of every ViT-style Transformer (public: 2)")
    ff_mult: int = Field(1, ge=1, le=8, description="mlp_dim as a multiple of d_model (public: 128 = 1 x 128)")
    dropout: float = Field(0.0, ge=0.0, le=0.9, description="dropout in attention outputs and MLPs (public: 0)")
    audio_kernel: int = Field(1, ge=1, le=64, description="frame window of the audio projection (public: 1, a "
                              "per-frame Linear); >1 with audio_stride shortens the sequence for cost")
    audio_stride: int = Field(1, ge=1, le=64, description="audio shortening factor (public: 1)")
    vision_kernel: int = Field(1, ge=1, le=64, description="frame window of the vision projection (public: 1)")
    vision_stride: int = Field(1, ge=1, le=64, description="vision shortening factor (public: 1)")
    dim_head: int = Field(64, ge=4, le=256, description="width of one attention head (public: the default 64, "
                          "so q/k/v are heads x 64 = 512 wide at d 128)")
    n_tokens: int = Field(8, ge=1, le=64, description="token_length: learned tokens per modality (public: 8)")
    lang_layers: int = Field(2, ge=1, le=8, description="depth of the language encoder of the DMML; the "
                             "hyper-modality learning has one layer more (public: 2 and 3)")
    disc_hidden: int = Field(64, ge=2, le=1024, description="hidden width of the effectiveness discriminator (public: 64)")
    detach_completeness: bool = Field(True, description="the completeness estimate enters h_d detached, so only "
                                      "its own loss trains it (public: attached; the task then drove every estimate "
                                      "to 1 and the proxy out of use, see docs/models.md)")
    reverse_task_grad: bool = Field(False, description="the gradient reversal also on the proxy's task path (public: "
                                    "true, so the task loss reaches the proxy generator reversed); false: only the "
                                    "discriminator's gradient is reversed")
    w_cc: float = Field(0.9, ge=0, le=10, description="alpha: completeness-check MSE (public MOSI 0.9); search [0, 2]")
    w_adv: float = Field(0.8, ge=0, le=10, description="beta: effectiveness discriminator CE (public MOSI 0.8); "
                         "search [0, 2]")
    w_rec: float = Field(0.1, ge=0, le=10, description="gamma: reconstruction MSE (public MOSI 0.1); search [0, 1]")


TINY = {"d_model": 16, "n_heads": 2, "enc_layers": 1, "ff_mult": 1, "dim_head": 8, "n_tokens": 2,
        "lang_layers": 1, "disc_hidden": 8, "audio_kernel": 4, "audio_stride": 4, "vision_kernel": 4,
        "vision_stride": 4, "bert_layers": 1, "bert_hidden": 32}


# ---- blocks (basic_layers.py) ---------------------------------------------------------------------

class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


class FrontEnd(nn.Module):
    """Frame projections and the text source shared by LNLN and MulT: a Conv1d over frame windows
    (kernel 1 = the public per-frame Linear) per modality, text from features or a BERT over the ids.

    pad 'same': windows centred, T' = ceil(T / stride) (the SequenceEncoder's rule);
    pad 'none': no padding, T' = floor((T - kernel) / stride) + 1 (MulT's Conv1d, padding 0); a
    sequence shorter than the kernel is right-padded with zeros (invalid frames) to one window.
    A projected step is valid / attended if any frame of its window was (max-pooled masks)."""

    def __init__(self, config: EncoderConfig, spec: DataSpec, windows: dict[str, tuple[int, int]], *,
                 bias: bool, pad: Literal["same", "none"]):
        super().__init__()
        if config.text_encoder == "bert" and not spec.text_ids:
            raise ConfigError("model.text_encoder: 'bert' needs BERT token ids in the data (text_bert), "
                              "which this data has not; use text_encoder: features")
        self.bert = build_bert(config) if config.text_encoder == "bert" else None
        text_in = self.bert.config.hidden_size if self.bert is not None else spec.dims["text"]
        in_dims = {"text": text_in, "audio": spec.dims["audio"], "vision": spec.dims["vision"]}
        self.windows, self.pad = windows, pad
        self.proj = nn.ModuleDict({m: nn.Conv1d(in_dims[m], config.d_model, windows[m][0], windows[m][1], bias=bias)
                                   for m in MODALITIES})

    def out_len(self, modality: str, t: int) -> int:
        k, s = self.windows[modality]
        return max(1, math.ceil(t / s)) if self.pad == "same" else (max(t, k) - k) // s + 1

    def _pads(self, modality: str, t: int) -> tuple[int, int]:
        k, s = self.windows[modality]
        if self.pad == "none":
            return 0, max(0, k - t)
        total = (self.out_len(modality, t) - 1) * s + k - t
        return (k - s) // 2, total - (k - s) // 2

    def forward(self, inputs: ModelInput, modality: str) -> tuple[Tensor, Tensor, Tensor]:
        """-> projected (B, T', d), valid (B, T'), attend (B, T')."""
        x = ModalityEncoders._text_input(self, inputs) if modality == "text" else inputs.features(modality)
        k, s = self.windows[modality]
        pads = self._pads(modality, x.shape[1])
        h = window_proj(self.proj[modality], x, pads)  # (B, T', d)
        # the [CLS]/[SEP] rule of the shared encoders under BERT + known
        masks = [inputs.valid[modality], ModalityEncoders.attend(self, inputs, modality)]
        if k > 1 or s > 1:
            masks = [F.max_pool1d(F.pad(mk.unsqueeze(1).float(), pads), k, s).squeeze(1) > 0 for mk in masks]
        return h, masks[0], masks[1]


def attend(q: Tensor, k: Tensor, v: Tensor, heads: int, bias: Tensor | None = None) -> Tensor:
    """Projected q (B, Lq, inner), k, v (B, Lk, inner) -> (B, Lq, inner); bias (B, Lk) additive on keys."""
    b, lq, inner = q.shape
    q, k, v = (t.reshape(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))  # (B, h, L, dh)
    mask = None if bias is None else bias[:, None, None, :].to(q.dtype)  # (B, 1, 1, Lk)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, Lq, dh), scale dh^-0.5
    return a.transpose(1, 2).reshape(b, lq, inner)


def out_proj(inner: int, d: int, heads: int, dim_head: int, dropout: float) -> nn.Module:
    # the public code drops the output projection exactly when it would have the identity's shape
    return nn.Identity() if heads == 1 and dim_head == d else nn.Sequential(nn.Linear(inner, d), nn.Dropout(dropout))


class Attention(nn.Module):
    """Multi-head attention with heads x dim_head inner width, q/k/v without bias (Attention)."""

    def __init__(self, d: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.h = heads
        self.q, self.k, self.v = (nn.Linear(d, inner, bias=False) for _ in range(3))
        self.out = out_proj(inner, d, heads, dim_head, dropout)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
        return self.out(attend(self.q(q), self.k(k), self.v(v), self.h, bias))


class Block(nn.Module):
    """Pre-norm layer with separate norms of query, key and value (PreNorm_qkv + PreNorm FeedForward);
    self attention when ctx is None, else the query x attends ctx (CrossTransformerEncoder)."""

    def __init__(self, d: int, heads: int, dim_head: int, mlp: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, dim_head, dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp, d), nn.Dropout(dropout))

    def forward(self, x: Tensor, ctx: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        c = x if ctx is None else ctx
        x = x + self.attn(self.norm_q(x), self.norm_k(c), self.norm_v(c), bias)
        return x + self.ff(self.norm_ff(x))


class TokenTransformer(nn.Module):
    """Learned positions over n_frames (+ n_tokens zero-initialised tokens in front) and Blocks
    (Transformer). bias (B, n) masks frames as keys; the tokens are always keys."""

    def __init__(self, n_frames: int, n_tokens: int, d: int, depth: int, heads: int, dim_head: int, mlp: int,
                 dropout: float):
        super().__init__()
        self.n_tokens = n_tokens
        self.pos = nn.Parameter(torch.randn(1, n_frames + n_tokens, d))
        self.tokens = nn.Parameter(torch.zeros(1, n_tokens, d)) if n_tokens else None
        self.blocks = nn.ModuleList(Block(d, heads, dim_head, mlp, dropout) for _ in range(depth))

    def forward(self, x: Tensor, bias: Tensor | None = None, keep_all: bool = False) -> Tensor | list[Tensor]:
        b, n, _ = x.shape
        if n + self.n_tokens > self.pos.shape[1]:
            raise ValueError(f"a sequence of {n} steps is longer than the {self.pos.shape[1] - self.n_tokens} "
                             f"learned positions this LNLN was built with (the training data's length)")
        if self.tokens is not None:
            x = torch.cat([self.tokens.expand(b, -1, -1), x], dim=1)  # (B, K + n, d)
            if bias is not None:
                bias = torch.cat([bias.new_zeros(b, self.n_tokens), bias], dim=1)
        x = x + self.pos[:, : x.shape[1]]
        hidden = [x]
        for blk in self.blocks:
            x = blk(x, bias=bias)
            hidden.append(x)
        return hidden if keep_all else x


class HyperLayer(nn.Module):
    """H_hyper' = LN(H_hyper) + Out(Att(q(H_d), k_a(H_a), v_a(H_a)) + Att(q(H_d), k_v(H_v), v_v(H_v)))
    (PreNorm_hyper + HhyperLearningLayer: four norms; the residual adds to the normalised H_hyper)."""

    def __init__(self, d: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.h = heads
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(4))  # H_d, H_a, H_v, H_hyper
        self.q, self.k_a, self.k_v, self.v_a, self.v_v = (nn.Linear(d, inner, bias=False) for _ in range(5))
        self.out = out_proj(inner, d, heads, dim_head, dropout)

    def forward(self, h_d: Tensor, h_a: Tensor, h_v: Tensor, h_hyper: Tensor) -> Tensor:
        h_d, h_a, h_v, h_hyper = (n(x) for n, x in zip(self.norms, (h_d, h_a, h_v, h_hyper)))
        q = self.q(h_d)
        shift = attend(q, self.k_a(h_a), self.v_a(h_a), self.h) + attend(q, self.k_v(h_v), self.v_v(h_v), self.h)
        return h_hyper + self.out(shift)


class FusionTransformer(nn.Module):
    """One zero token in front of source and target, learned positions for each, then target attends
    source in Blocks (CrossTransformer)."""

    def __init__(self, n: int, d: int, depth: int, heads: int, dim_head: int, mlp: int, dropout: float):
        super().__init__()
        self.pos_s = nn.Parameter(torch.randn(1, n + 1, d))
        self.pos_t = nn.Parameter(torch.randn(1, n + 1, d))
        self.token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(Block(d, heads, dim_head, mlp, dropout) for _ in range(depth))

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        tok = self.token.expand(source.shape[0], -1, -1)
        s = torch.cat([tok, source], 1) + self.pos_s[:, : source.shape[1] + 1]  # (B, 1 + n, d)
        t = torch.cat([tok, target], 1) + self.pos_t[:, : target.shape[1] + 1]
        for blk in self.blocks:
            t = blk(t, ctx=s)
        return t


# ---- the model (lnln.py) ---------------------------------------------------------------------------

@register("lnln", LNLNConfig, tiny=TINY)
class LNLN(MSAModel):
    def __init__(self, config: LNLNConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        d, k, p, mlp = c.d_model, c.n_tokens, c.dropout, c.ff_mult * c.d_model

        def vit(n_frames: int, n_tokens: int, depth: int = c.enc_layers) -> TokenTransformer:
            return TokenTransformer(n_frames, n_tokens, d, depth, c.n_heads, c.dim_head, mlp, p)

        windows = {"text": (1, 1), "audio": (c.audio_kernel, c.audio_stride), "vision": (c.vision_kernel, c.vision_stride)}
        self.encoders = FrontEnd(c, spec, windows, bias=True, pad="same")
        self.extract = nn.ModuleDict({m: vit(self.encoders.out_len(m, spec.seq_lens[m]), k) for m in MODALITIES})
        # DMC: completeness check of language, proxy dominant feature, effectiveness discriminator
        self.check = vit(k, 1)
        self.check_head = nn.Sequential(nn.Linear(d, d // 2), nn.LeakyReLU(0.1), nn.Linear(d // 2, 1), nn.Sigmoid())
        self.h_p = nn.Parameter(torch.ones(1, k, d))
        self.proxy = vit(3 * k, k)
        self.discriminator = nn.Sequential(nn.Linear(d, c.disc_hidden), nn.LeakyReLU(0.1), nn.Linear(c.disc_hidden, 2))
        self.reconstruct = nn.ModuleDict({m: vit(k, 0) for m in MODALITIES})
        # DMML: language encoder, hyper-modality learning, fusion, regression
        self.lang = vit(k, 0, c.lang_layers)
        self.h_hyper = nn.Parameter(torch.ones(1, k, d))
        self.hyper = nn.ModuleList(HyperLayer(d, c.n_heads, c.dim_head, p) for _ in range(c.lang_layers + 1))
        self.fusion = FusionTransformer(k, d, c.enc_layers, c.n_heads, c.dim_head, mlp, p)
        self.head = nn.Linear(d, 1)

    @property
    def needs_complete(self) -> bool:
        return True  # the reconstruction targets and the discriminator's real samples

    def loss_weights(self) -> dict[str, float]:
        c = self.config
        return {"cc": c.w_cc, "adv": c.w_adv, "rec": c.w_rec}

    def tokens(self, inputs: ModelInput) -> dict[str, Tensor]:
        """H_m (B, K, d) per modality: the learned tokens after each feature extractor."""
        out = {}
        for m in MODALITIES:
            h, _, attend = self.encoders(inputs, m)
            out[m] = self.extract[m](h, key_bias(attend, h.dtype))[:, : self.config.n_tokens]
        return out

    def parts(self, inputs: ModelInput, h: dict[str, Tensor]) -> dict[str, Tensor]:
        b = inputs.size
        c = self.config
        w_hat = self.check_head(self.check(h["text"])[:, 0])  # (B, 1)
        # the true text fraction only under the `known` arm
        w = inputs.integrity[:, :1] if inputs.known else (w_hat.detach() if c.detach_completeness else w_hat)
        w = w.unsqueeze(-1)  # (B, 1, 1)
        proxy_in = torch.cat([self.h_p.expand(b, -1, -1), h["audio"], h["vision"]], dim=1)  # (B, 3K, d)
        proxy = self.proxy(proxy_in)[:, : c.n_tokens]  # (B, K, d)
        reversed_ = _ReverseGrad.apply(proxy)
        h_adv = reversed_ * (1 - w) + h["text"] * w  # (B, K, d): what the discriminator judges
        h_d = h_adv if c.reverse_task_grad else proxy * (1 - w) + h["text"] * w
        hs = self.lang(h_d, keep_all=True)  # lang_layers + 1 x (B, K, d)
        hyper = self.h_hyper.expand(b, -1, -1)
        for layer, h_di in zip(self.hyper, hs):
            hyper = layer(h_di, h["audio"], h["vision"], hyper)
        fused = self.fusion(hyper, hs[-1])  # (B, 1 + K, d)
        return {"w_hat": w_hat, "proxy": proxy, "h_d": h_d, "h_adv": h_adv, "hyper": hyper,
                "fused": fused[:, 1:].mean(1)}

    def diagnose(self, inputs: ModelInput) -> dict[str, Tensor]:
        p = self.parts(inputs, self.tokens(inputs))
        return {"part/dominant": p["h_d"].mean(1), "part/proxy": p["proxy"].mean(1),
                "part/hyper": p["hyper"].mean(1), "part/fused": p["fused"]}

    def forward(self, inputs: ModelInput, targets: Targets | None = None) -> dict[str, Any]:
        targets = self.check_inputs(inputs, targets)
        train = self.training and targets is not None
        b = inputs.size
        h = self.tokens(targets.complete.cat(inputs) if train else inputs)  # complete rows first in training
        h_c, h = ({m: v[:b] for m, v in h.items()}, {m: v[b:] for m, v in h.items()}) if train else (None, h)
        p = self.parts(inputs, h)
        pred = self.head(p["fused"]).squeeze(-1)  # (B,)
        if not train:
            return {"pred": pred, "losses": {}}
        real = torch.cat([p["h_adv"], h_c["text"]]).flatten(0, 1)  # (2 B K, d): corrected, then complete language
        k = self.config.n_tokens
        is_corrected = torch.cat([torch.ones(b * k), torch.zeros(b * k)]).long().to(real.device)
        rec = torch.cat([self.reconstruct[m](h[m]) for m in MODALITIES], 1)  # (B, 3K, d)
        losses = {"cc": F.mse_loss(p["w_hat"].squeeze(-1), targets.integrity[:, 0]),
                  "adv": F.cross_entropy(self.discriminator(real), is_corrected),
                  "rec": F.mse_loss(rec, torch.cat([h_c[m] for m in MODALITIES], 1))}
        return {"pred": pred, "losses": losses}

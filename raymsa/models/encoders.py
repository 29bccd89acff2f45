"""Blocks shared by every model: the per-modality sequence encoder (strided convolution, position,
learned tokens, pre-norm Transformer), the optional BERT text front end, and a cross-attention block
with an additive bias.

Why the sequence encoder shortens first: a 2-layer d=128 Transformer over MOSI's 500 vision frames
costs ~9 s forward+backward at batch 64 on 2 CPU cores; after a stride-8 convolution (63 steps) it is
~0.1 s. A shortened step is observed if any of its frames was (the masks are max-pooled over the same
windows as the convolution).

Why learned tokens are prepended and never masked: a modality missing entirely in a sample leaves
no observed key, and softmax over an all-masked row is NaN. With the tokens always present as keys,
such a row attends to them only, and its outputs are finite; the masks then keep its sequence
positions out of every pooling. The tokens double as summaries of the sequence (FSRF's pooled token
Z_m, LNLN's 8 learnable tokens).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from raymsa.batch import MODALITIES, ModelInput
from raymsa.config import ConfigError
from raymsa.models.base import DataSpec, ModelConfig

# Additive attention bias of a masked key: far below any real logit, yet finite, so a row whose
# keys are all masked gets a uniform (finite) attention instead of NaN.
NEG = -1e4
BERT_VOCAB = 30522  # bert-base-uncased / MMSA's text_bert ids


class EncoderConfig(ModelConfig):
    """Sizes of the per-modality encoders, shared by every model's config."""

    d_model: int = Field(64, ge=8, le=1024, description="width of every encoder and head; search {32, 64, 96, 128}")
    n_heads: int = Field(4, ge=1, le=16, description="attention heads; d_model must divide by it; search {2, 4, 8}")
    enc_layers: int = Field(2, ge=1, le=8, description="Transformer layers per modality encoder; search {1, 2, 3}")
    ff_mult: int = Field(2, ge=1, le=8, description="feed-forward width as a multiple of d_model; search {2, 4}")
    dropout: float = Field(0.1, ge=0.0, le=0.9, description="dropout everywhere; search [0, 0.3]")
    audio_kernel: int = Field(8, ge=1, le=64, description="temporal conv kernel over audio frames (>= stride)")
    audio_stride: int = Field(8, ge=1, le=64, description="audio shortening factor; MOSI 375 frames -> 47 "
                              "steps at 8; search {4, 8, 16}")
    vision_kernel: int = Field(8, ge=1, le=64, description="temporal conv kernel over vision frames (>= stride)")
    vision_stride: int = Field(8, ge=1, le=64, description="vision shortening factor; MOSI 500 frames -> 63 "
                               "steps at 8; search {4, 8, 16}")
    text_encoder: Literal["features", "bert"] = Field(
        "features", description="'features': precomputed text features -> Linear; 'bert': BertModel over batch.text_ids"
    )
    bert_path: str | None = Field(
        None, description="local BERT directory (loaded with local_files_only); None: a small random BERT built in code"
    )
    bert_layers: int = Field(2, ge=1, le=24, description="layers of the in-code BERT (bert_path None)")
    bert_hidden: int = Field(128, ge=16, le=1024, description="hidden size of the in-code BERT (bert_path None)")
    bert_heads: int = Field(2, ge=1, le=16, description="attention heads of the in-code BERT (bert_path None)")

    @model_validator(mode="after")
    def _check_shapes(self) -> EncoderConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.bert_hidden % self.bert_heads:
            raise ValueError(f"bert_hidden={self.bert_hidden} is not divisible by bert_heads={self.bert_heads}")
        for m in ("audio", "vision"):
            k, s = getattr(self, f"{m}_kernel"), getattr(self, f"{m}_stride")
            if k < s:
                raise ValueError(f"{m}_kernel={k} < {m}_stride={s} would skip frames")
        return self


@dataclass
class Encoded:
    tokens: Tensor  # (B, K, d) outputs at the learned tokens
    seq: Tensor  # (B, T', d) outputs at the shortened time steps
    attend: Tensor  # (B, T') bool: the step holds a frame the model may attend (ModelInput.attend:
    #                 an observed frame under 'known', any valid frame under 'unknown')
    valid: Tensor  # (B, T') bool: the step holds at least one frame inside the sample's length


def sinusoid(length: int, d: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe.to(dtype)  # (T, d)


def key_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, L) bool 'may attend' -> (B, L) additive bias: 0 or NEG."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, NEG)


@contextmanager
def frozen_eval(module: nn.Module) -> Iterator[None]:
    """Run `module` as a fixed target: no dropout, no graph. Restores its training flag."""
    was_training = module.training
    module.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def window_proj(conv: nn.Conv1d, x: Tensor, pads: tuple[int, int]) -> Tensor:
    """`conv` over time of x (B, T, D) padded left/right by `pads` -> (B, T', d_out). Windows that
    do not overlap (kernel == stride; text's kernel 1 included) are one matmul over the frames
    reshaped to (B, T', kernel * D): the same weights and products as the Conv1d, summed in another
    order, without mkldnn's convolution and the transposed copy of x (under torch.profiler those were
    ~18 % of an FSRF training step at MOSI shapes, most of it text's 768-wide kernel-1 conv;
    benchmarks/bench_step.py measures 0.95 of the step before)."""
    k, s = conv.kernel_size[0], conv.stride[0]
    if k != s or conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
        return conv(F.pad(x.transpose(1, 2), pads)).transpose(1, 2)
    if any(pads):
        x = F.pad(x, (0, 0, *pads))  # (B, T + pad, D)
    b, t, d = x.shape
    t_out = (t - k) // k + 1  # Conv1d's length: a trailing partial window is dropped
    w = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, k * d)  # (d_out, k * D), frame-major
    return F.linear(x[:, : t_out * k].reshape(b, t_out, k * d), w, conv.bias)


class SequenceEncoder(nn.Module):
    """x (B, T, D_in) with valid/attend masks (B, T) -> Encoded with T' = ceil(T / stride)."""

    def __init__(self, in_dim: int, d: int, *, n_heads: int, layers: int, ff_mult: int, dropout: float,
                 kernel: int = 1, stride: int = 1, n_tokens: int = 1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.proj = nn.Conv1d(in_dim, d, kernel_size=kernel, stride=stride)
        # COVAREP, Facet and BERT features differ in scale by orders of magnitude
        self.norm_in = nn.LayerNorm(d)
        self.tokens = nn.Parameter(torch.randn(n_tokens, d) * 0.02)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d, n_heads, ff_mult * d, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)

    def _pads(self, t: int) -> tuple[int, int]:
        """Left/right padding so that every frame falls in a window and T' = ceil(T / stride)."""
        t_out = max(1, math.ceil(t / self.stride))
        total = (t_out - 1) * self.stride + self.kernel - t
        left = (self.kernel - self.stride) // 2
        return left, total - left

    def _pool_mask(self, mask: Tensor, pads: tuple[int, int]) -> Tensor:
        if self.kernel == 1 and self.stride == 1:
            return mask
        m = F.pad(mask.unsqueeze(1).float(), pads)  # (B, 1, T + pad)
        return F.max_pool1d(m, self.kernel, self.stride).squeeze(1) > 0  # (B, T')

    def forward(self, x: Tensor, valid: Tensor, attend: Tensor) -> Encoded:
        b, t, _ = x.shape
        pads = self._pads(t)
        h = window_proj(self.proj, x, pads)  # (B, T', d)
        valid_s, attend_s = self._pool_mask(valid, pads), self._pool_mask(attend, pads)
        h = self.norm_in(h) + sinusoid(h.shape[1], h.shape[2], h.device, h.dtype)
        k = self.tokens.shape[0]
        z = torch.cat([self.tokens.expand(b, -1, -1), h], dim=1)  # (B, K + T', d)
        pad = torch.cat([attend_s.new_zeros(b, k), ~attend_s], dim=1)  # (B, K + T') True = ignore
        z = self.blocks(self.drop(z), src_key_padding_mask=pad)
        return Encoded(tokens=z[:, :k], seq=z[:, k:], attend=attend_s, valid=valid_s)


def build_bert(config: EncoderConfig) -> nn.Module:
    """A BertModel from a local directory, or a small random one built in code; never downloads."""
    from transformers import BertConfig, BertModel

    if config.bert_path is None:
        bert_cfg = BertConfig(vocab_size=BERT_VOCAB, hidden_size=config.bert_hidden,
                              num_hidden_layers=config.bert_layers, num_attention_heads=config.bert_heads,
                              intermediate_size=4 * config.bert_hidden)
        return BertModel(bert_cfg, add_pooling_layer=False)
    path = Path(config.bert_path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model.bert_path: {path}: no such directory (BERT weights are never downloaded; "
                          f"point bert_path at a local model directory or leave it unset for an in-code BERT)")
    try:
        return BertModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.bert_path: {path}: not a loadable BERT directory: {e}") from None


class ModalityEncoders(nn.Module):
    """One SequenceEncoder per modality (own weights, same class); text through BERT if configured."""

    def __init__(self, config: EncoderConfig, spec: DataSpec, n_tokens: int):
        super().__init__()
        if config.text_encoder == "bert" and not spec.text_ids:
            raise ConfigError("model.text_encoder: 'bert' needs BERT token ids in the data (text_bert), "
                              "which this data has not; use text_encoder: features")
        self.bert = build_bert(config) if config.text_encoder == "bert" else None
        text_in = self.bert.config.hidden_size if self.bert is not None else spec.dims["text"]
        in_dims = {"text": text_in, "audio": spec.dims["audio"], "vision": spec.dims["vision"]}
        windows = {"text": (1, 1), "audio": (config.audio_kernel, config.audio_stride),
                   "vision": (config.vision_kernel, config.vision_stride)}
        self.enc = nn.ModuleDict({
            m: SequenceEncoder(in_dims[m], config.d_model, n_heads=config.n_heads, layers=config.enc_layers,
                               ff_mult=config.ff_mult, dropout=config.dropout, kernel=windows[m][0],
                               stride=windows[m][1], n_tokens=n_tokens)
            for m in MODALITIES
        })

    def _text_input(self, inputs: ModelInput) -> Tensor:
        if self.bert is None:
            return inputs.text
        ids, att, seg = inputs.text_ids.long().unbind(1)  # 3 x (B, T)
        # a sample of length 0 would leave BERT no key; [CLS] is always there in real ids
        att = att.clone()
        att[:, 0] = 1
        return self.bert(input_ids=ids, attention_mask=att, token_type_ids=seg).last_hidden_state  # (B, T, H)

    def attend(self, inputs: ModelInput, modality: str) -> Tensor:
        """(B, T) the frames the encoder may attend. Under BERT the ids of [CLS] (position 0) and
        [SEP] (last attended position) are never erased, so they stay attended under 'known' too."""
        keys = inputs.attend(modality)
        if modality == "text" and self.bert is not None and inputs.known:
            attn = inputs.text_ids[:, 1] > 0  # (B, T)
            pos = torch.arange(attn.shape[1], device=attn.device)  # (T,)
            last = torch.where(attn, pos, -1).amax(dim=1)  # (B,) position of [SEP]
            special = attn & ((pos == 0)[None, :] | (pos[None, :] == last[:, None]))  # (B, T)
            keys = keys | special
        return keys

    def forward(self, inputs: ModelInput) -> dict[str, Encoded]:
        out = {}
        for m in MODALITIES:
            x = self._text_input(inputs) if m == "text" else inputs.features(m)
            out[m] = self.enc[m](x, inputs.valid[m], self.attend(inputs, m))
        return out


def erasure_evidence(inputs: ModelInput) -> Tensor:
    """(B, 3) what the input itself shows of its erasure, per modality: the share of valid frames that
    are exactly zero vectors (the field's protocol erases a frame by zeroing it; text included, whose
    features are erased the same way whatever the ids show). Computed from corrupted features and
    padding masks only, so it is open to a model under unknown missingness (a deployed model sees
    the same zeros). 0 for a sample with no valid frame."""
    cols = []
    for m in MODALITIES:
        valid = inputs.valid[m]  # (B, T)
        x = inputs.features(m)  # (B, T, D)
        # all-zero frames by two reductions, without a (B, T, D) temporary: x.abs() or x == 0 at
        # text's 768 features cost more than the whole text projection (fresh pages each step)
        zero = (x.amax(dim=-1) == 0) & (x.amin(dim=-1) == 0)  # (B, T); a NaN frame is not zero
        cols.append((zero & valid).sum(1) / valid.sum(1).clamp_min(1))
    return torch.stack(cols, dim=1).to(inputs.text.dtype)  # (B, 3)


def integrity_prior(evidence: Tensor) -> Tensor:
    """(B, 3) logit of 1 − evidence, clamped to [0.001, 0.999]: where an integrity estimator starts.
    (A tighter clamp biased the estimates high: a complete modality's target is 1, and the correction
    learned a positive offset to reach it from the clamp, which it then added everywhere.)

    The learned estimators add their correction to this logit (their last layer starts at zero), so
    an estimate is unbiased from the first step wherever the zero frames tell the whole story, and
    the network learns what they do not (frames that were zero before erasure, noise, ids)."""
    return torch.logit((1.0 - evidence).clamp(0.001, 0.999))


def zero_last(module: nn.Sequential) -> nn.Sequential:
    """Zero the last Linear of an MLP: its output starts at 0 (a correction that starts neutral)."""
    nn.init.zeros_(module[-1].weight)
    nn.init.zeros_(module[-1].bias)
    return module


class CrossBlock(nn.Module):
    """Pre-norm cross attention from x (B, Lq, d) into ctx (B, Lk, d), then a feed-forward.

    bias (B, Lq or 1, Lk) is added to the attention logits: NEG for masked keys, log-weights for
    soft weighting (integrity, dominance)."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.h, self.p = n_heads, dropout
        self.norm_q, self.norm_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, ff_mult * d), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: Tensor, bias: Tensor) -> Tensor:
        b, lq, d = x.shape
        lk = ctx.shape[1]
        q = self.q(self.norm_q(x)).view(b, lq, self.h, d // self.h).transpose(1, 2)  # (B, h, Lq, dh)
        k, v = self.kv(self.norm_kv(ctx)).view(b, lk, 2, self.h, d // self.h).permute(2, 0, 3, 1, 4)  # (B, h, Lk, dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(1).to(q.dtype),
                                           dropout_p=self.p if self.training else 0.0)  # (B, h, Lq, dh)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, lq, d)))
        return x + self.drop(self.ff(x))


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))

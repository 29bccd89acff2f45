"""late_fusion: the reference curve for effective robustness.

Per-modality encoders (the same SequenceEncoder as FSRF and Senti-iFusion), mean pooling over the
valid steps (erased frames included, as the zeros they are: the field's late fusion is not told what
was erased; under the `known` arm over the observed steps), a head per modality, concatenation, an MLP -> score. No recovery of missing
modalities and no auxiliary losses: whatever a model gains over this under missingness is what its
recovery machinery buys. (Late fusion as in e.g. Baltrusaitis et al., "Multimodal Machine
Learning: A Survey and Taxonomy", TPAMI 2019.)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from raymsa.batch import MODALITIES, ModelInput, Targets
from raymsa.models.base import DataSpec, MSAModel
from raymsa.models.encoders import EncoderConfig, ModalityEncoders, mlp
from raymsa.models.registry import register


class LateFusionConfig(EncoderConfig):
    name: Literal["late_fusion"] = "late_fusion"


TINY = {"d_model": 16, "n_heads": 2, "enc_layers": 1, "ff_mult": 1, "audio_kernel": 4, "audio_stride": 4,
        "vision_kernel": 4, "vision_stride": 4, "bert_layers": 1, "bert_hidden": 32}


@register("late_fusion", LateFusionConfig, tiny=TINY)
class LateFusion(MSAModel):
    def __init__(self, config: LateFusionConfig, spec: DataSpec):
        super().__init__(config, spec)
        d = config.d_model
        # one learned token per encoder: only the key that keeps an all-missing row finite
        self.encoders = ModalityEncoders(config, spec, n_tokens=1)
        self.heads = nn.ModuleDict({m: mlp(d, d, d, config.dropout) for m in MODALITIES})
        self.fuse = nn.Sequential(nn.LayerNorm(3 * d), mlp(3 * d, d, 1, config.dropout))

    def forward(self, inputs: ModelInput, targets: Targets | None = None) -> dict[str, Any]:
        self.check_inputs(inputs, targets)
        enc = self.encoders(inputs)
        # pooled over valid steps (unknown) or observed ones (known); none: zeros, the same input every time
        h = [self.heads[m](self.masked_mean(enc[m].seq, enc[m].attend)) for m in MODALITIES]  # 3 x (B, d)
        pred = self.fuse(torch.cat(h, dim=-1)).squeeze(-1)  # (B,)
        return {"pred": pred, "losses": {}}

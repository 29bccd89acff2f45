"""The one interface every model implements, so training, search and evaluation never branch on a
model's name.

    out = model(batch)              # batch: raymsa.batch.Batch
    out["pred"]                     # (B,) sentiment score
    out["losses"]                   # {name: scalar tensor}, auxiliary losses, unweighted
    out["pred_complete"]            # optional (B,): the complete view's prediction in training; the
                                    #   loop adds its task criterion on it as loss 'task_complete'
    model.loss_weights()            # {name: weight} for the current stage; the loop computes
                                    #   total = task_loss + sum(weight[k] * losses[k])
    model.stages()                  # [Stage(name, fraction of epochs)], followed by the loop
    model.set_stage(name)

In eval mode a model must not need `batch.complete` and may return no losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from raymsa.batch import MODALITIES, Batch
from raymsa.config import StrictModel


@dataclass(frozen=True)
class DataSpec:
    """What a model must know of the data: read from the arrays, never from a config."""

    dims: dict[str, int]  # modality -> feature dim
    seq_lens: dict[str, int]  # modality -> padded length
    text_ids: bool = False  # whether batches carry BERT token ids
    label_range: float = 3.0  # labels lie in [-R, R]: 3 for MOSI/MOSEI, 1 for SIMS

    @classmethod
    def from_data(cls, data: Any, dataset: str | None = None) -> DataSpec:
        dataset = dataset or data.dataset
        return cls(dims=dict(data.dims), seq_lens=dict(data.seq_lens), text_ids=bool(data.has_text_ids),
                   label_range=1.0 if dataset == "sims" else 3.0)


@dataclass(frozen=True)
class Stage:
    name: str
    fraction: float  # share of the run's epochs spent in this stage


class ModelConfig(StrictModel):
    """Base of every model's config. Subclasses add their sizes, switches, loss weights and
    temperatures, each with a default and a documented range (these are what searches tune)."""

    name: str
    # 'tiny' applies the registered test-sized overrides (explicitly given fields still win)
    variant: Literal["default", "tiny"] = "default"


class MSAModel(nn.Module):
    config_cls: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig, spec: DataSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        self.stage = self.stages()[0].name

    # ---- the interface -------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_weights(self) -> dict[str, float]:
        """Weight of each auxiliary loss in the current stage (0 switches a loss off)."""
        return {}

    def stages(self) -> list[Stage]:
        return [Stage("main", 1.0)]

    def set_stage(self, name: str) -> None:
        names = [s.name for s in self.stages()]
        if name not in names:
            raise ValueError(f"{type(self).__name__}: unknown stage {name!r}; stages are {names}")
        self.stage = name

    @property
    def needs_complete(self) -> bool:
        """Whether training batches must carry the complete input (self-distillation, targets)."""
        return False

    # ---- input checks, before any computation ----------------------------------------------
    def check_batch(self, batch: Batch, _what: str = "batch") -> None:
        """Raise a ValueError naming the tensor and the expected shape; nothing is computed before.

        In training, a model that needs the complete input gets `batch.complete` checked the same way
        (same shapes as the incomplete batch)."""
        if batch.labels is None or batch.labels.dim() != 1:
            shape = None if batch.labels is None else tuple(batch.labels.shape)
            raise ValueError(f"{_what}.labels has shape {shape}; expected (B,)")
        b = batch.labels.shape[0]
        for m in MODALITIES:
            x = batch.features(m)
            want = (b, self.spec.seq_lens[m], self.spec.dims[m])
            if x is None:
                raise ValueError(f"{_what}.{m} is missing; the model was built for {m} of shape {want}")
            # sequence length may differ from the training data's (another file); dims may not
            if x.dim() != 3 or x.shape[0] != b or x.shape[1] < 1 or x.shape[2] != want[2]:
                raise ValueError(f"{_what}.{m} has shape {tuple(x.shape)}; expected (B={b}, T>=1, D={want[2]})")
            for mask_name in ("valid", "observed"):
                mask = getattr(batch, mask_name).get(m)
                if mask is None:
                    raise ValueError(f"{_what}.{mask_name}[{m!r}] is missing; "
                                     f"expected a bool mask of shape {(b, x.shape[1])}")
                if tuple(mask.shape) != (b, x.shape[1]) or mask.dtype != torch.bool:
                    raise ValueError(
                        f"{_what}.{mask_name}[{m!r}] has shape {tuple(mask.shape)} and dtype {mask.dtype}; "
                        f"expected torch.bool of shape {(b, x.shape[1])}"
                    )
        if getattr(self.config, "text_encoder", "features") == "bert":
            ids, t = batch.text_ids, batch.text.shape[1]
            if ids is None or ids.dim() != 3 or tuple(ids.shape) != (b, 3, t) or ids.is_floating_point():
                shape = None if ids is None else tuple(ids.shape)
                raise ValueError(f"{_what}.text_ids has shape {shape}; expected integer ids of shape (B={b}, 3, T={t}) "
                                 f"(text_encoder is 'bert')")
        if self.training and self.needs_complete and _what == "batch":
            c = batch.complete
            if c is None:
                raise ValueError(f"batch.complete is missing; {type(self).__name__} needs the complete input in "
                                 f"training (keep it in the missingness scenario, or switch off the parts that use it)")
            self.check_batch(c, "batch.complete")
            for m in MODALITIES:
                if c.features(m).shape != batch.features(m).shape:
                    raise ValueError(f"batch.complete.{m} has shape {tuple(c.features(m).shape)}; expected the "
                                     f"incomplete batch's {tuple(batch.features(m).shape)}")

    @staticmethod
    def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
        """Mean over time of x (B, T, D) where mask (B, T) is True; zero for an all-False row."""
        w = mask.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)

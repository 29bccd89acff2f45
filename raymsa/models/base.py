"""The one interface every model implements, so training, search and evaluation never branch on a
model's name.

    inputs, targets = batch.split(knowledge)   # raymsa.batch: ModelInput, Targets
    out = model(inputs, targets)    # training: targets feed only the losses
    out = model(inputs)             # evaluation: targets are never given
    out["pred"]                     # (B,) sentiment score
    out["losses"]                   # {name: scalar tensor}, auxiliary losses, unweighted
    out["pred_complete"]            # optional (B,): the complete view's prediction in training; the
                                    #   loop adds its task criterion on it as loss 'task_complete'
    model.loss_weights()            # {name: weight} for the current stage; the loop computes
                                    #   total = task_loss + sum(weight[k] * losses[k])
    model.stages()                  # [Stage(name, fraction of epochs)], followed by the loop
    model.set_stage(name)

The prediction may depend only on `inputs`: in eval mode a forward that is handed targets raises,
so an evaluation cannot read labels, erasure masks or the complete input even by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from raymsa.batch import MODALITIES, ModelInput, Targets
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
    def forward(self, inputs: ModelInput, targets: Targets | None = None) -> dict[str, Any]:  # pragma: no cover
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
    def final_stage(self) -> bool:
        """Whether the current stage is the last one: the only one whose forward path is the
        model's (selection and pruning judge nothing else)."""
        return self.stage == self.stages()[-1].name

    def diagnose(self, inputs: ModelInput) -> dict[str, Tensor]:
        """Per-sample inner outputs for the diagnostics of raymsa.train.evaluate (eval mode, no
        targets): 'integrity' (B, 3) estimates, 'dominance' (B, 3) weights, 'part/<name>' (B, D)
        representations whose collapse is measured. {} for a model with none of these. It may also
        return 'pred' (B,): the forward's prediction for the same input, which spares the evaluator a
        second forward (GridEvaluator.run; tests/test_evaluate.py checks it equals the forward's)."""
        return {}

    @property
    def needs_complete(self) -> bool:
        """Whether training targets must carry the complete input (self-distillation, targets)."""
        return False

    @property
    def needs_targets(self) -> bool:
        """Whether a training forward needs targets (it has auxiliary losses)."""
        return bool(self.loss_weights()) or self.needs_complete

    # ---- input checks, before any computation ----------------------------------------------
    def check_inputs(self, inputs: ModelInput, targets: Targets | None) -> Targets | None:
        """Raise naming the tensor and the expected shape; nothing is computed before. Returns the
        targets a training forward may use (None in eval mode)."""
        if not isinstance(inputs, ModelInput):
            raise TypeError(f"{type(self).__name__} takes a raymsa.batch.ModelInput (batch.model_input(knowledge)), "
                            f"got {type(inputs).__name__}: a model never sees a whole Batch")
        if targets is not None and not isinstance(targets, Targets):
            raise TypeError(f"targets must be a raymsa.batch.Targets (batch.targets()), got {type(targets).__name__}")
        if not self.training and targets is not None:
            raise ValueError(f"{type(self).__name__} got targets in eval mode: an evaluation sees the model input only")
        self.check_model_input(inputs, "inputs")
        b = inputs.size
        if not self.training:
            return None
        if targets is None:
            if self.needs_targets:
                raise ValueError(f"{type(self).__name__} needs targets in training (its losses use them): "
                                 f"call model(inputs, targets) with inputs, targets = batch.split(knowledge)")
            return None
        if targets.labels is None or tuple(targets.labels.shape) != (b,):
            shape = None if targets.labels is None else tuple(targets.labels.shape)
            raise ValueError(f"targets.labels has shape {shape}; expected (B={b},)")
        for m in MODALITIES:
            want = (b, inputs.features(m).shape[1])
            for mask_name in ("valid", "observed"):
                mask = getattr(targets, mask_name).get(m)
                if mask is None or tuple(mask.shape) != want or mask.dtype != torch.bool:
                    got = None if mask is None else (tuple(mask.shape), mask.dtype)
                    raise ValueError(f"targets.{mask_name}[{m!r}] is {got}; expected torch.bool of shape {want}")
        if self.needs_complete:
            if not targets.has_complete:
                raise ValueError(f"targets.complete is missing; {type(self).__name__} needs the complete input in "
                                 f"training (keep it in the missingness scenario, or switch off the parts that use it)")
            c = targets.complete
            self.check_model_input(c, "targets.complete")
            for m in MODALITIES:
                if c.features(m).shape != inputs.features(m).shape:
                    raise ValueError(f"targets.complete.{m} has shape {tuple(c.features(m).shape)}; expected the "
                                     f"incomplete input's {tuple(inputs.features(m).shape)}")
        return targets

    def check_model_input(self, inputs: ModelInput, what: str) -> None:
        b = inputs.text.shape[0] if inputs.text is not None else None
        for m in MODALITIES:
            x = inputs.features(m)
            want = (b, self.spec.seq_lens[m], self.spec.dims[m])
            if x is None:
                raise ValueError(f"{what}.{m} is missing; the model was built for {m} of shape {want}")
            # sequence length may differ from the training data's (another file); dims may not
            if x.dim() != 3 or x.shape[0] != b or x.shape[1] < 1 or x.shape[2] != want[2]:
                raise ValueError(f"{what}.{m} has shape {tuple(x.shape)}; expected (B={b}, T>=1, D={want[2]})")
            masks = {"valid": inputs.valid.get(m)}
            if inputs.known:
                masks["observed"] = inputs.observed.get(m)
            for mask_name, mask in masks.items():
                if mask is None:
                    raise ValueError(f"{what}.{mask_name}[{m!r}] is missing; "
                                     f"expected a bool mask of shape {(b, x.shape[1])}")
                if tuple(mask.shape) != (b, x.shape[1]) or mask.dtype != torch.bool:
                    raise ValueError(
                        f"{what}.{mask_name}[{m!r}] has shape {tuple(mask.shape)} and dtype {mask.dtype}; "
                        f"expected torch.bool of shape {(b, x.shape[1])}"
                    )
        if getattr(self.config, "text_encoder", "features") == "bert":
            ids, t = inputs.text_ids, inputs.text.shape[1]
            if ids is None or ids.dim() != 3 or tuple(ids.shape) != (b, 3, t) or ids.is_floating_point():
                shape = None if ids is None else tuple(ids.shape)
                raise ValueError(f"{what}.text_ids has shape {shape}; expected integer ids of shape (B={b}, 3, T={t}) "
                                 f"(text_encoder is 'bert')")

    @staticmethod
    def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
        """Mean over time of x (B, T, D) where mask (B, T) is True; zero for an all-False row."""
        w = mask.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)

"""The config of one training run, parsed once from YAML (+ key=value overrides) into typed objects.

    model:     {name: fsrf, variant: default|tiny, <model fields>}    see docs/models.md
    data:      {path: null | file.pkl, like: mosi, ...}             null = embedded synthetic default
    scenario:  {kind: intra, levels: [...], ...}                    see docs/missingness.md
    train:     {epochs, batch_size, lr, seed, patience, ...}
    resources: {workers, use_gpu, amp, cpus_per_worker}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from raymsa.config import ConfigError, StrictModel, apply_overrides, load_yaml, parse
from raymsa.missing import ScenarioConfig
from raymsa.models import ModelConfig, model_config


# The embedded data's test split, per like: None keeps the real split's size. MOSI-like: 3 x MOSI's
# 686. At 686 samples the test-sample part of a paired interval's half-width alone is about the
# 0.02 MAE equivalence margin, whatever the number of seeds (issue 24: per-sample sd of the paired
# difference 0.38-0.48, cross-seed correlation 0.13), so no headline row could end 'equivalent'
# and the rounds stop at once as test-set bound; 3x shrinks that part by sqrt(3) at a cost of
# about 17 s more evaluation per run (docs/data.md, 'Test-split size'). MOSEI's 4659 is large enough.
EMBEDDED_TEST_SIZE: dict[str, int | None] = {"mosi": 2058, "mosei": None, "sims": None}


class DataConfig(StrictModel):
    path: str | None = Field(None, description="MMSA feature pickle; null = the embedded synthetic default")
    like: Literal["mosi", "mosei", "sims"] = Field("mosi", description="which dataset the default imitates")
    synth_seed: int = Field(0, description="seed of the embedded default (a different seed = another dataset)")
    dataset: Literal["mosi", "mosei", "sims"] | None = Field(
        None, description="label convention for metrics; null = guessed from the file")
    test_size: int | None = Field(None, ge=2, description=(
        "embedded synthetic data only: samples in its test split (train and valid keep the real sizes); "
        "null = EMBEDDED_TEST_SIZE for the like (MOSI-like: larger than MOSI's 686, so that a study can "
        "resolve differences of the equivalence margin; docs/data.md 'Test-split size')"))
    max_train: int | None = Field(None, ge=1, description="use only the first N training samples (smoke runs)")
    max_eval: int | None = Field(None, ge=1, description="use only the first N valid/test samples (smoke runs)")

    @model_validator(mode="after")
    def _synthetic_only(self) -> DataConfig:
        if self.path is not None and self.test_size is not None:
            raise ValueError("test_size: sizes the embedded synthetic data's test split only; a data.path "
                             "file has the test split it has (leave test_size out)")
        return self

    @property
    def synth_test_size(self) -> int | None:
        """The embedded data's test size (None = the like's real size)."""
        if self.path is not None:
            return None
        return self.test_size if self.test_size is not None else EMBEDDED_TEST_SIZE.get(self.like)

    def load(self):
        """The MMSAData this section names (the embedded default is generated once and cached)."""
        from raymsa.data import load_default, load_mmsa

        if self.path is None:
            return load_default(like=self.like, seed=self.synth_seed, test_size=self.synth_test_size)
        return load_mmsa(self.path, dataset=self.dataset)


class LoopConfig(StrictModel):
    epochs: int = Field(20, ge=1, description="the cap: at most this many epochs (patience may stop earlier)")
    batch_size: int = Field(64, ge=1, description="global batch; split evenly over workers")
    eval_batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="linear warm-up over this share of the cap's steps")
    schedule: Literal["plateau", "cosine"] = Field("plateau", description=(
        "after warm-up: 'plateau' keeps the LR until the validation objective stalls, then multiplies it "
        "by lr_factor (torch ReduceLROnPlateau), so the data, not the cap, decides when training ends; "
        "'cosine' decays to 0 at the cap (the last epoch then tends to be the best whatever the cap)"))
    lr_factor: float = Field(0.5, gt=0, lt=1, description="plateau: LR multiplier when the objective stalls")
    lr_patience: int = Field(1, ge=0, description="plateau: judged epochs without improvement before the LR drops")
    min_lr_fraction: float = Field(0.01, ge=0, le=1, description="plateau: the LR never falls below lr x this")
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null = off")
    ema_epochs: float | None = Field(None, gt=0, description=(
        "weight averaging: validation, model selection (the selected checkpoint) and test see an exponential moving "
        "average of the weights (torch.optim.swa_utils.AveragedModel) whose horizon is this many epochs "
        "(decay 1 - 1 / (ema_epochs x steps per epoch)), restarted at each stage; null = the raw weights"))
    task_loss: Literal["l1", "mse"] = Field("l1", description="regression loss on the incomplete view")
    seed: int = Field(1111, description="model init, data order and training masks")
    eval_mask_seed: int | None = Field(
        None, description="seed of the fixed evaluation masks; null = the run's seed")
    select_metric: str = Field("MAE", description="model selection: this metric's mean over the validation grid")
    patience: int | None = Field(None, ge=1, description=(
        "early stopping after N judged epochs without an improvement larger than min_delta; "
        "null = train to the cap (epochs)"))
    min_delta: float = Field(0.0, ge=0, description=(
        "an epoch counts as an improvement for patience and the plateau LR only if it beats the best so "
        "far by more than this (absolute, in the selection metric's units); the selected checkpoint is "
        "still the best one"))
    threads: int | None = Field(None, ge=1, description="torch threads per worker; null = the worker's CPUs")
    eval_test: bool = Field(True, description="evaluate the selected checkpoint on test at the end")

    @model_validator(mode="after")
    def _plateau_lr_takes_effect(self) -> LoopConfig:
        # ReduceLROnPlateau drops the LR on the (lr_patience + 1)-th judged epoch without an
        # improvement; early stopping ends the run on the patience-th. With patience <= lr_patience + 1
        # the run stops on or before the drop, so it never trains at a reduced LR and ends wherever
        # validation noise first gives two bad epochs in a row (issue 19: with patience 2, lr_patience 1,
        # late_fusion stopped after 5-8 epochs at 0.996 test MAE; patience 4: 13-15 epochs, 0.935,
        # benchmarks/bench_seed_variance.py)
        if self.schedule == "plateau" and self.patience is not None and self.patience < self.lr_patience + 2:
            raise ValueError(
                f"patience: {self.patience} stops the run no later than the plateau schedule's first LR drop "
                f"(lr_patience {self.lr_patience}: the LR drops after {self.lr_patience + 1} judged epochs "
                f"without improvement), so the reduced LR is never trained with; use patience >= "
                f"{self.lr_patience + 2}, a smaller lr_patience, or schedule: cosine")
        return self


class ResourcesConfig(StrictModel):
    workers: int = Field(1, ge=1, description="data-parallel workers; >1 runs under Ray Train (DDP)")
    use_gpu: bool = False
    amp: bool = Field(False, description="bf16 autocast (GPU only; ignored on CPU)")
    cpus_per_worker: float = Field(1, gt=0)


class TrainConfig(StrictModel):
    model: SerializeAsAny[ModelConfig]
    data: DataConfig = DataConfig()
    scenario: ScenarioConfig
    train: LoopConfig = LoopConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _model_by_name(cls, v: Any) -> Any:
        # the registry picks the config class from the model's name
        return model_config(v, source="model") if isinstance(v, dict) else v

    @field_validator("scenario", mode="before")
    @classmethod
    def _scenario_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_train_config(data: dict[str, Any], source: str) -> TrainConfig:
    data = dict(data)
    if isinstance(data.get("model"), dict):
        # parsed here, not inside TrainConfig's validator, so errors read 'file: model.key: ...'
        data["model"] = model_config(data["model"], source=source, prefix="model")
    return parse(TrainConfig, data, source)


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """YAML file (or nothing) + 'a.b=value' overrides -> validated TrainConfig."""
    data = load_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    apply_overrides(data, list(overrides))
    return parse_train_config(data, source)

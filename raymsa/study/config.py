"""A study file (`studies/*.yaml`), parsed and checked whole before any Ray work starts."""

from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from raymsa.config import ConfigError, StrictModel, apply_overrides, load_yaml
from raymsa.metrics import METRIC_DIRECTION
from raymsa.missing import ScenarioConfig
from raymsa.resources import packaged_dir, resolve_named, resolve_path
from raymsa.search.space import SearchSpace, load_space
from raymsa.train.config import DataConfig, LoopConfig, parse_train_config

# the packaged folders: the installed package's copies, or a checkout's top-level folders
STUDIES_DIR = packaged_dir("studies")
SPACES_DIR = packaged_dir("search_spaces")


class ModelEntry(StrictModel):
    search_space: str | None = Field(None, description=(
        "a search space: a name or path, looked up next to the study file first, then in the packaged "
        "search_spaces/; null = no search"))
    config: dict[str, Any] = Field(default_factory=dict, description="model fields other than the defaults")


class SearchSettings(StrictModel):
    trials: int = Field(12, ge=1)
    startup_trials: int = Field(4, ge=1, description="random trials before TPE models the space")
    grace_period: int = Field(2, ge=1, description="halving: epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1)
    max_concurrent: int | None = Field(None, ge=1, description=(
        "trials of one search at a time, suggested as one batch (null = every slot). Any value is "
        "reproducible; a fixed one also across clusters of other sizes (the batch size shapes the search)"))
    seed: int = Field(0, description="base of the Optuna sampler seeds; each (model, scenario, repeat) "
                      "draws its own from it (sampler_seed)")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler: TPE or random search")
    pruning: bool = Field(True, description="successive halving on epochs (false: every trial runs every epoch)")
    repeats: int = Field(1, ge=1, description=(
        "independent searches per (model, scenario), each with its own sampler seed; seed j of `seeds` is "
        "retrained with the winner of repeat j mod repeats, so resampling seeds resamples searches"))
    objective: str = Field("MAE", description="metric whose mean over the validation grid is optimised")
    optuna_storage: bool = Field(False, description="keep each Optuna study in <study>/optuna.db (optuna-dashboard)")

    def sampler_seed(self, model: str, scenario: str, repeat: int = 0) -> int:
        """The Optuna sampler seed of one search: a stream of its own per (model, scenario, repeat).
        With `seed` alone every scenario's search began from the same random configs (two searches
        of one fsrf_sweep picked the identical config)."""
        tags = [zlib.crc32(model.encode()), zlib.crc32(scenario.encode())]
        return int(np.random.SeedSequence([self.seed, repeat, *tags]).generate_state(1)[0] % 2**31)


class StudyResources(StrictModel):
    workers_per_trial: int = Field(1, ge=1, description=">1 runs each trial under Ray Train (DDP)")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="fractional values let small trials share a GPU")
    max_concurrent: int | None = Field(None, ge=1, description="null = as many as the cluster's CPUs allow")
    amp: bool = False


class ReportSettings(StrictModel):
    equivalence_margin: dict[str, float] = Field(default_factory=dict, description=(
        "per metric, the difference below which two models count as equivalent (raw units: accuracies "
        "in 0..1); metrics not named keep the report's defaults (MAE 0.02, accuracies 0.01: "
        "raymsa/report/verdicts.py, docs/report.md)"))

    @model_validator(mode="after")
    def _check(self) -> ReportSettings:
        for k, v in self.equivalence_margin.items():
            if k not in METRIC_DIRECTION:
                raise ValueError(f"equivalence_margin.{k}: not a metric ({', '.join(sorted(METRIC_DIRECTION))})")
            if not v > 0:
                raise ValueError(f"equivalence_margin.{k}: must be > 0, got {v}")
        return self


class StudyConfig(StrictModel):
    name: str
    description: str | None = None
    data: DataConfig = DataConfig()
    models: dict[str, ModelEntry]
    reference_model: str | None = Field(None, description="a model of `models`, the effective-robustness reference")
    scenarios: list[ScenarioConfig]
    train: LoopConfig = LoopConfig()
    search: SearchSettings = SearchSettings()
    seeds: list[int] = Field(default_factory=lambda: [1111, 1112, 1113], min_length=1)
    resources: StudyResources = StudyResources()
    cross_scenario: bool = Field(True, description="test each scenario's best config under every other scenario")
    smoke: dict[str, Any] | None = Field(None, description="overlay applied by --smoke")
    report: ReportSettings = ReportSettings()

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        if not self.models:
            raise ValueError("models: a study needs at least one model")
        if self.reference_model is not None and self.reference_model not in self.models:
            raise ValueError(f"reference_model: {self.reference_model!r} is not one of models ({', '.join(self.models)})")
        labels = [s.label for s in self.scenarios]
        if not labels:
            raise ValueError("scenarios: a study needs at least one scenario")
        if len(set(labels)) != len(labels):
            raise ValueError(f"scenarios: labels must be unique, got {labels}; give repeated kinds a name")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeated seed in {self.seeds}")
        if self.search.repeats > len(self.seeds):
            raise ValueError(f"search.repeats: {self.search.repeats} repeats but {len(self.seeds)} seeds; a repeat "
                             "is retrained with the seeds j where j mod repeats = its index, so repeats beyond "
                             "the number of seeds would never be used")
        return self

    # ---- what each run is built from ---------------------------------------------------------
    def base_train_config(self, model: str, scenario: ScenarioConfig) -> dict[str, Any]:
        """The raw training config of one (model, scenario) before search parameters."""
        res = self.resources
        return {
            "model": {"name": model, **copy.deepcopy(self.models[model].config)},
            "data": self.data.model_dump(mode="json"),
            "scenario": scenario.model_dump(mode="json", exclude_none=True),
            "train": {**self.train.model_dump(mode="json"), "select_metric": self.search.objective,
                      "eval_test": False, "seed": self.seeds[0]},
            "resources": {"workers": res.workers_per_trial, "cpus_per_worker": res.cpus_per_worker,
                          "use_gpu": res.gpus_per_trial > 0, "amp": res.amp},
        }


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def check_overrides(overrides: list[str]) -> None:
    """`--set KEY=` with nothing after '=' would parse as null and silently mean the default
    (`--set data.path=` ran on the synthetic data): refuse it."""
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq and not value.strip():
            raise ConfigError(f"--set {item}: empty value for {key.strip()}; give a value "
                              f"(or {key.strip()}=null for none)")


def blame_overrides(err: ValidationError, source: str, overrides: list[str]) -> str:
    """Each validation error attributed to the --set flag that set its key, else to the study file."""
    keys = {item.partition("=")[0].strip(): item for item in overrides}
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if not loc and msg.startswith("Value error, ") and ":" in msg:
            # a check across fields (StudyConfig._check) names its key at the start of the message
            loc, msg = msg[len("Value error, "):].split(":", 1)
            msg = msg.strip()
        flag = next((item for k, item in keys.items()
                     if loc and (loc == k or loc.startswith(k + ".") or k.startswith(loc + "."))), None)
        lines.append(f"--set {flag}: {loc}: {msg}" if flag else f"{source}: {loc or '<top>'}: {msg}")
    return "\n".join(lines)


def load_study(name: str, *, smoke: bool = False, overrides: list[str] = ()) -> tuple[StudyConfig, dict[str, SearchSpace], Path]:
    """Parse a study and every search space it names, and check each space against the training
    config it will be applied to. Returns (study, spaces by model, study file)."""
    path = resolve_named(name, "studies", "study file")
    raw = load_yaml(path)
    source = str(path)
    if smoke:
        overlay = raw.get("smoke")
        if not isinstance(overlay, dict):
            raise ConfigError(f"{source}: smoke: --smoke needs a 'smoke' overlay mapping in the study file")
        raw = deep_merge(raw, overlay)
        raw["name"] = f"{raw.get('name', path.stem)}-smoke"
    check_overrides(overrides)
    apply_overrides(raw, list(overrides), source="--set")
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(blame_overrides(e, source, overrides)) from None

    spaces: dict[str, SearchSpace] = {}
    for model, entry in study.models.items():
        for scenario in study.scenarios:
            base = study.base_train_config(model, scenario)
            parse_train_config(copy.deepcopy(base), f"{source}: models.{model}")
        if entry.search_space is not None:
            # a user's own study keeps its spaces beside it; the packaged ones are the fallback
            space_path = resolve_path(entry.search_space, [path.parent, SPACES_DIR], "search space",
                                      source=f"{source}: models.{model}.search_space: ")
            space = load_space(space_path)
            space.validate_against(study.base_train_config(model, study.scenarios[0]), parse_train_config)
            spaces[model] = space
    return study, spaces, path

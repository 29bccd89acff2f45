"""A study file (`studies/*.yaml`), parsed and checked whole before any Ray work starts."""

from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

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
    model: str | None = Field(None, description=(
        "the registered model this entry trains (raymsa.models); null = the entry's key. The key is the "
        "entry's label (runs, eval.csv, search folders, report), so one model can appear as several "
        "variants, e.g. fsrf_no_distill: {model: fsrf, config: {w_distill: 0}}"))
    search_space: str | None = Field(None, description=(
        "a search space: a name or path, looked up next to the study file first, then in the packaged "
        "search_spaces/; null = no search"))
    config: dict[str, Any] = Field(default_factory=dict, description="model fields other than the defaults")

    def registry_name(self, label: str) -> str:
        return self.model or label


DEFAULT_SUFFIX = "_default"


class SearchSettings(StrictModel):
    trials: int = Field(12, ge=1)
    startup_trials: int | None = Field(None, ge=1, description=(
        "random trials before TPE models the space; null = a quarter of `trials` (at least 2, Optuna's "
        "TPE needs some to model from; warm-start trials count towards it)"))
    grace_period: int = Field(2, ge=1, description=(
        "halving: judged epochs (epochs of the model's final stage, whose objective is not NaN) every "
        "trial gets before it can be stopped, so a two-stage model is judged at the same point of its "
        "judged phase as a one-stage one, and no trial is judged while it still sits near the constant predictor"))
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
    multivariate: bool = Field(True, description=(
        "TPE models the parameters jointly (Optuna's multivariate TPE, Falkner et al. 2018) instead of "
        "one at a time; group=True splits the joint model where a parameter is absent"))
    constant_liar: bool = Field(True, description=(
        "TPE treats running trials as bad results when it suggests the next (Optuna's constant liar), so "
        "one batch of concurrent suggestions spreads out instead of repeating one point"))
    groups: list[str] = Field(default_factory=lambda: ["loss"], min_length=1, description=(
        "which parameter groups of each search space are searched (each parameter names its group, "
        "default 'loss'); the rest keep the model's defaults. [loss, regularisation] adds dropout and "
        "weight decay"))
    default_arm: bool = Field(False, description=(
        "every model with a search space also gets LABEL_default: its default config retrained with the "
        "same seeds, no search, so the report can say what tuning bought"))
    warm_start: bool = Field(False, description=(
        "each scenario's search starts with the best configs found so far under the study's other "
        "scenarios (Optuna enqueue_trial through OptunaSearch's points_to_evaluate); scenarios are "
        "searched in warm-start order (mixed first, then the rest as listed)"))
    objective: str = Field("MAE", description="metric whose mean over the validation grid is optimised")
    optuna_storage: bool = Field(False, description="keep each Optuna study in <study>/optuna.db (optuna-dashboard)")

    @property
    def n_startup(self) -> int:
        """Trials before TPE models the space: the set value, else a quarter of the budget (at least 2).
        Optuna counts every finished trial, so warm-start trials count towards it."""
        return self.startup_trials if self.startup_trials is not None else max(2, self.trials // 4)

    def sampler_seed(self, model: str, scenario: str, repeat: int = 0) -> int:
        """The Optuna sampler seed of one search: a stream of its own per (model, scenario, repeat).
        With `seed` alone every scenario's search began from the same random configs (two searches
        of one fsrf_sweep picked the identical config)."""
        tags = [zlib.crc32(model.encode()), zlib.crc32(scenario.encode())]
        return int(np.random.SeedSequence([self.seed, repeat, *tags]).generate_state(1)[0] % 2**31)


class SeedPlan(StrictModel):
    """Which seeds a study trains. A plain list in the study file means every run gets every seed
    (initial = the list, max = its length). With `max` above len(initial) the study adds `step` new
    seeds per round, only to the comparisons whose headline verdict is still open (raymsa.report.verdicts),
    until every headline row is resolved or `max` seeds are reached; the looks at n = len(initial),
    len(initial) + step, ..., max are planned in advance, so the sequential test's alpha spending knows them."""

    initial: list[int] = Field(default_factory=lambda: [1111, 1112, 1113], min_length=1)
    max: int | None = Field(None, ge=1, description="seeds per comparison at most; null = len(initial) (no rounds)")
    step: int = Field(2, ge=1, description="seeds added per round to each open comparison")

    @model_validator(mode="after")
    def _check(self) -> SeedPlan:
        if len(set(self.initial)) != len(self.initial):
            raise ValueError(f"repeated seed in {self.initial}")
        if self.max is None:
            self.max = len(self.initial)
        if self.max < len(self.initial):
            raise ValueError(f"max: {self.max} is below the {len(self.initial)} initial seeds")
        return self

    @property
    def adaptive(self) -> bool:
        return self.max > len(self.initial)

    def looks(self) -> list[int]:
        """Seeds per comparison at each planned look."""
        out = [len(self.initial)]
        while out[-1] < self.max:
            out.append(min(self.max, out[-1] + self.step))
        return out

    def next_seeds(self, used: list[int], n_now: int) -> list[int]:
        """The seeds of the next round for comparisons that have n_now seeds: consecutive integers
        after the largest seed used so far, so one round's seeds are shared by every open pair."""
        k = min(self.step, self.max - n_now)
        start = max(used) + 1
        return list(range(start, start + max(0, k)))

    def record(self) -> dict[str, Any]:
        return {"initial": list(self.initial), "max": self.max, "step": self.step, "looks": self.looks()}


class StudyResources(StrictModel):
    workers_per_trial: int = Field(1, ge=1, description=">1 runs each trial under Ray Train (DDP)")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="fractional values let small trials share a GPU")
    max_concurrent: int | None = Field(None, ge=1, description="null = as many as the cluster's CPUs allow")
    amp: bool = False


class ReportSettings(StrictModel):
    ablation_of: str | None = Field(None, description="a label of `models`: the full model; every other entry "
                                    "is a variant with a component switched off (the report's ablation table)")
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
    seeds: SeedPlan = Field(default_factory=SeedPlan, description=(
        "a list (every run, every seed) or {initial: [...], max: N, step: k} (seeds added in rounds "
        "where a headline comparison is still open)"))
    resources: StudyResources = StudyResources()
    cross_scenario: bool = Field(True, description="test each scenario's best config under every other scenario")
    smoke: dict[str, Any] | None = Field(None, description="overlay applied by --smoke")
    report: ReportSettings = ReportSettings()

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, v: Any) -> Any:
        if isinstance(v, list):  # today's meaning: every run gets every seed
            return {"initial": v, "max": len(v)}
        return v

    @model_validator(mode="before")
    @classmethod
    def _add_default_arms(cls, data: Any) -> Any:
        """search.default_arm: each entry with a search space gets LABEL_default (same model and
        config, no search space), added here so that every later step sees an ordinary entry."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return data
        search = data.get("search")
        if not (isinstance(search, dict) and search.get("default_arm") is True):
            return data
        models = {}
        for label, entry in data["models"].items():
            models[label] = entry
            if not isinstance(entry, dict) or entry.get("search_space") is None:
                continue
            arm = f"{label}{DEFAULT_SUFFIX}"
            if arm in data["models"]:
                raise ValueError(f"models.{arm}: clashes with the default arm search.default_arm adds for "
                                 f"{label}; rename the entry or set search.default_arm: false")
            # right after its tuned entry, so tables list the two together
            models[arm] = {"model": entry.get("model") or label, "search_space": None,
                           "config": copy.deepcopy(entry.get("config") or {})}
        return {**data, "models": models}

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        if not self.models:
            raise ValueError("models: a study needs at least one model")
        from raymsa.models import list_models

        for label, entry in self.models.items():
            if "__" in label:  # the run and search folders split their names on '__'
                raise ValueError(f"models.{label}: a label may not contain '__'")
            if entry.registry_name(label) not in list_models():
                where = f"models.{label}.model" if entry.model else f"models.{label}"
                raise ValueError(f"{where}: unknown model {entry.registry_name(label)!r} (registered: "
                                 f"{', '.join(list_models())}); a label other than a model name needs "
                                 f"'model: NAME'")
        if self.reference_model is not None and self.reference_model not in self.models:
            raise ValueError(f"reference_model: {self.reference_model!r} is not one of models ({', '.join(self.models)})")
        if self.report.ablation_of is not None and self.report.ablation_of not in self.models:
            raise ValueError(f"report.ablation_of: {self.report.ablation_of!r} is not one of models "
                             f"({', '.join(self.models)})")
        labels = [s.label for s in self.scenarios]
        if not labels:
            raise ValueError("scenarios: a study needs at least one scenario")
        if len(set(labels)) != len(labels):
            raise ValueError(f"scenarios: labels must be unique, got {labels}; give repeated kinds a name")
        if self.search.repeats > len(self.seeds.initial):
            raise ValueError(f"search.repeats: {self.search.repeats} repeats but {len(self.seeds.initial)} initial seeds; a repeat "
                             "is retrained with the seeds j where j mod repeats = its index, so repeats beyond "
                             "the number of seeds would never be used")
        return self

    # ---- labels and arms -----------------------------------------------------------------------
    @property
    def model_of(self) -> dict[str, str]:
        """label -> registered model name."""
        return {label: e.registry_name(label) for label, e in self.models.items()}

    @property
    def default_arms(self) -> dict[str, str]:
        """tuned label -> its default arm's label (search.default_arm)."""
        if not self.search.default_arm:
            return {}
        return {label: f"{label}{DEFAULT_SUFFIX}" for label, e in self.models.items()
                if e.search_space is not None and f"{label}{DEFAULT_SUFFIX}" in self.models}

    def search_order(self) -> list[ScenarioConfig]:
        """The order scenarios are searched in. With warm start the first search has nothing to start
        from and each later one starts from all before it, so the most informative goes first: mixed
        (both missingness kinds at once, so its best config has been judged under each), then the
        rest as listed. Without warm start: as listed."""
        if not self.search.warm_start:
            return list(self.scenarios)
        first = [s for s in self.scenarios if s.kind == "mixed"]
        return first + [s for s in self.scenarios if s.kind != "mixed"]

    # ---- what each run is built from ---------------------------------------------------------
    def base_train_config(self, model: str, scenario: ScenarioConfig) -> dict[str, Any]:
        """The raw training config of one (label, scenario) before search parameters."""
        res = self.resources
        return {
            "model": {"name": self.models[model].registry_name(model), **copy.deepcopy(self.models[model].config)},
            "data": self.data.model_dump(mode="json"),
            "scenario": scenario.model_dump(mode="json", exclude_none=True),
            "train": {**self.train.model_dump(mode="json"), "select_metric": self.search.objective,
                      "eval_test": False, "seed": self.seeds.initial[0]},
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
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
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
    found_groups: set[str] = set()
    for model, entry in study.models.items():
        for scenario in study.scenarios:
            base = study.base_train_config(model, scenario)
            parse_train_config(copy.deepcopy(base), f"{source}: models.{model}")
        if entry.search_space is not None:
            # a user's own study keeps its spaces beside it; the packaged ones are the fallback
            space_path = resolve_path(entry.search_space, [path.parent, SPACES_DIR], "search space",
                                      source=f"{source}: models.{model}.search_space: ")
            space = load_space(space_path).select(study.search.groups)
            space.validate_against(study.base_train_config(model, study.scenarios[0]), parse_train_config)
            spaces[model] = space
            found_groups.update(load_space(space_path).groups.values())
    unused = [g for g in study.search.groups if spaces and g not in found_groups]
    if unused:
        raise ConfigError(f"{source}: search.groups: {unused} is in no search space of the study "
                          f"(groups there: {sorted(found_groups)})")
    return study, spaces, path

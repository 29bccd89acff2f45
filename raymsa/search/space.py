"""Search spaces as data: `search_spaces/*.yaml` -> validated distributions -> Optuna.

    params:
      model.w_distill: {dist: loguniform, low: 0.01, high: 1.0}
      model.tau_distill: {dist: uniform, low: 1.0, high: 8.0}
      model.use_align: {dist: choice, values: [true, false]}
      train.lr: {dist: loguniform, low: 3.0e-4, high: 3.0e-3}
      model.dropout: {dist: uniform, low: 0.0, high: 0.4, group: regularisation}

Each parameter belongs to a group (default `loss`); a study searches the groups of its
`search.groups` and leaves the rest at the config's values. Every key is a dotted path into the training config (model.*, train.*, scenario.*); a space is
checked against the config it will be applied to before any Ray work starts: an unknown key, an
empty range, an unknown distribution, or a value the config would refuse is an error that names
the file and the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import Field, PrivateAttr, model_validator

from raymsa.config import ConfigError, StrictModel, load_yaml, parse, set_dotted

DISTS = ("uniform", "loguniform", "int", "logint", "choice")


class Param(StrictModel):
    dist: Literal["uniform", "loguniform", "int", "logint", "choice"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    values: list[Any] | None = None
    group: str = Field("loss", min_length=1, description=(
        "the parameter's group: a study searches only the groups in its search.groups (default [loss])"))

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.dist == "choice":
            if not self.values:
                raise ValueError("choice needs a non-empty 'values' list")
            if self.low is not None or self.high is not None:
                raise ValueError("choice takes 'values', not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.dist} needs 'low' and 'high'")
        if self.values is not None:
            raise ValueError(f"{self.dist} takes low/high, not 'values'")
        if not self.low < self.high:
            raise ValueError(f"empty range: low {self.low} must be below high {self.high}")
        if self.dist in ("loguniform", "logint") and self.low <= 0:
            raise ValueError(f"{self.dist} needs low > 0, got {self.low}")
        if self.dist in ("int", "logint") and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"{self.dist} needs whole-number bounds")
        return self

    def optuna(self) -> optuna.distributions.BaseDistribution:
        d = optuna.distributions
        if self.dist == "choice":
            return d.CategoricalDistribution(self.values)
        if self.dist in ("int", "logint"):
            return d.IntDistribution(int(self.low), int(self.high), log=self.dist == "logint",
                                     step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, log=self.dist == "loguniform",
                                   step=self.step if self.dist == "uniform" else None)

    def corners(self) -> list[Any]:
        """Values that must all be acceptable to the config (the ends of the range, every choice)."""
        if self.dist == "choice":
            return list(self.values)
        if self.dist in ("int", "logint"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class SearchSpace(StrictModel):
    description: str | None = None
    params: dict[str, Param]
    _source: str = PrivateAttr("search space")  # the file, for messages

    @property
    def source(self) -> str:
        return self._source

    @model_validator(mode="after")
    def _keys(self) -> SearchSpace:
        if not self.params:
            raise ValueError("params: a search space needs at least one parameter")
        for key in self.params:
            if key.split(".")[0] not in ("model", "train", "scenario"):
                raise ValueError(f"{key}: keys start with model., train. or scenario.")
        return self

    @property
    def groups(self) -> dict[str, str]:
        """parameter -> its group."""
        return {k: p.group for k, p in self.params.items()}

    def select(self, groups: list[str]) -> SearchSpace:
        """The space restricted to the parameters of `groups` (the others keep the config's values)."""
        kept = {k: p for k, p in self.params.items() if p.group in groups}
        if not kept:
            have = sorted({p.group for p in self.params.values()})
            raise ConfigError(f"{self.source}: no parameter in the groups {list(groups)} the study searches "
                              f"(this space has {have}); set search.groups accordingly")
        out = SearchSpace(description=self.description, params=kept)
        out._source = self._source
        return out

    def optuna_space(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {k: p.optuna() for k, p in self.params.items()}

    def validate_against(self, base: dict[str, Any], parse_config) -> None:
        """Apply each parameter's extreme values to the raw base config and parse it: fails on an
        unknown key or a value outside what the config accepts, naming this file and the key."""
        parsed = parse_config(copy.deepcopy(base), "base config")
        for key, param in self.params.items():
            if not _key_exists(parsed, key):
                raise ConfigError(f"{self.source}: params.{key}: not a field of the training config")
            for value in param.corners():
                trial = copy.deepcopy(base)
                set_dotted(trial, key, value)
                try:
                    parse_config(trial, f"{self.source}: params.{key}={value!r}")
                except ConfigError as e:
                    raise ConfigError(f"{self.source}: params.{key}: value {value!r} is refused by the config:\n{e}") from None


def _key_exists(cfg: Any, key: str) -> bool:
    """A dotted key names a field of the parsed config (so a typo is caught, not silently added)."""
    node: Any = cfg
    for part in key.split("."):
        fields = getattr(type(node), "model_fields", None)
        if fields is None or part not in fields:
            return False
        node = getattr(node, part)
    return True


def load_space(path: str | Path) -> SearchSpace:
    space = parse(SearchSpace, load_yaml(path), str(path))
    space._source = str(path)
    return space


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(out, key, value)
    return out


def param_importances(space: SearchSpace, trials: list[tuple[dict[str, Any], float]], direction: str,
                      seed: int = 0) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) from finished trials; {} when too few differ."""
    finite = [(p, v) for p, v in trials if v == v and all(k in p for k in space.params)]
    if len(finite) < 3 or len({v for _, v in finite}) < 2:
        return {}
    dists = space.optuna_space()
    study = optuna.create_study(direction=direction)
    for params, value in finite:
        study.add_trial(optuna.trial.create_trial(params={k: params[k] for k in dists}, distributions=dists,
                                                  value=value))
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):
        return {}
    return {k: float(v) for k, v in imp.items()}


def group_importances(space: SearchSpace, importances: dict[str, float]) -> dict[str, float]:
    """fANOVA importances summed per parameter group (they sum to 1 over the searched parameters)."""
    out: dict[str, float] = {}
    for k, v in importances.items():
        g = space.params[k].group if k in space.params else "?"
        out[g] = out.get(g, 0.0) + float(v)
    return out

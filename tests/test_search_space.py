"""Search spaces and study files: checked whole, errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymsa.config import ConfigError
from raymsa.search.space import load_space, param_importances
from raymsa.study.config import SPACES_DIR, STUDIES_DIR, load_study
from raymsa.train.config import parse_train_config

BASE = {"model": {"name": "fsrf"}, "scenario": {"kind": "intra"}}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_are_valid_and_documented(path):
    assert path.read_text().startswith("#"), "every search space opens with a header comment"
    space = load_space(path)
    model = path.stem
    space.validate_against({"model": {"name": model}, "scenario": {"kind": "intra"}}, parse_train_config)
    assert space.optuna_space()


@pytest.mark.parametrize("path", sorted(STUDIES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_studies_parse_with_and_without_smoke(path):
    assert path.read_text().startswith("#"), "every study opens with a header comment"
    for smoke in (False, True):
        study, spaces, _ = load_study(str(path), smoke=smoke)
        assert study.scenarios and study.models
        assert set(spaces) <= set(study.models)


@pytest.mark.parametrize("text, message", [
    ("params:\n  model.w_bogus: {dist: uniform, low: 0, high: 1}\n", "params.model.w_bogus: not a field"),
    ("params:\n  train.lr: {dist: loguniform, low: 0.01, high: 0.001}\n", "empty range"),
    ("params:\n  train.lr: {dist: gaussian, low: 0.0, high: 1.0}\n", "params.train.lr.dist"),
    ("params:\n  train.lr: {dist: loguniform, low: 0.0, high: 1.0}\n", "needs low > 0"),
    ("params:\n  train.lr: {dist: uniform, low: 0.5, high: 2.0}\n", "value 2.0 is refused"),
    ("params:\n  train.epochs: {dist: choice, values: []}\n", "non-empty"),
    ("params: {}\n", "at least one parameter"),
    ("params:\n  lr: {dist: uniform, low: 0.1, high: 0.2}\n", "keys start with model."),
    ("params: [1, 2\n", "not valid YAML"),
])
def test_bad_spaces_are_refused_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, "space.yaml", text)
    with pytest.raises(ConfigError) as e:
        space = load_space(path)
        space.validate_against(BASE, parse_train_config)
    assert message in str(e.value)
    assert str(path) in str(e.value)


STUDY = """# test study
name: t
models:
  late_fusion: {search_space: %s}
scenarios: [{kind: intra}]
"""


@pytest.mark.parametrize("text, message", [
    (STUDY % "null" + "seeds: []\n", "seeds"),
    (STUDY % "null" + "trainn: {epochs: 2}\n", "trainn: unknown key"),
    (STUDY % "nope.yaml", "nope.yaml: no such search space"),
    (STUDY % "null" + "reference_model: fsrf\n", "reference_model"),
    ("name: t\nmodels: {fsfr: {}}\nscenarios: [{kind: intra}]\n", "unknown model 'fsfr'"),
    ("name: t\nmodels: {fsrf: {config: {w_bogus: 1}}}\nscenarios: [{kind: intra}]\n", "w_bogus: unknown key"),
    ("name: t\nmodels: {fsrf: {}}\nscenarios: [{kind: intra}, {kind: intra}]\n", "labels must be unique"),
    ("name: t\nmodels: {fsrf: {}}\nscenarios: [{kind: sideways}]\n", "scenarios.0.kind"),
])
def test_bad_studies_are_refused(tmp_path, text, message):
    path = write(tmp_path, "study.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_study(str(path))
    assert message in str(e.value) and str(path) in str(e.value)


def test_smoke_needs_an_overlay(tmp_path):
    path = write(tmp_path, "study.yaml", STUDY % "null")
    with pytest.raises(ConfigError, match="smoke"):
        load_study(str(path), smoke=True)


def test_importances_rank_the_parameter_that_matters(tmp_path):
    path = write(tmp_path, "s.yaml", "params:\n  train.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
                                     "  train.weight_decay: {dist: uniform, low: 0.0, high: 0.1}\n")
    space = load_space(path)
    import random

    rng = random.Random(0)
    trials = []
    for _ in range(30):
        lr, wd = 10 ** rng.uniform(-4, -2), rng.uniform(0, 0.1)
        trials.append(({"train.lr": lr, "train.weight_decay": wd}, (lr - 1e-3) ** 2 * 1e4 + 0.001 * wd))
    imp = param_importances(space, trials, "minimize")
    assert set(imp) == {"train.lr", "train.weight_decay"}
    assert imp["train.lr"] > imp["train.weight_decay"]
    assert param_importances(space, trials[:2], "minimize") == {}

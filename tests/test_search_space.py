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


# ---- labels, variants, default arms, groups, warm start (issue 21, 22.4) -----------------------------

VARIANTS = """# variants of one model
name: v
models:
  fsrf: {search_space: fsrf.yaml}
  fsrf_no_distill: {model: fsrf, config: {w_distill: 0.0}}
  late_fusion: {}
reference_model: late_fusion
scenarios: [{kind: intra}, {kind: mixed}, {kind: inter}]
search: {default_arm: true, warm_start: true}
"""


def test_variants_are_labels_of_a_registered_model(tmp_path):
    study, spaces, _ = load_study(str(write(tmp_path, "v.yaml", VARIANTS)))
    # the default arm sits right after its tuned entry; the variant keeps its own label
    assert list(study.models) == ["fsrf", "fsrf_default", "fsrf_no_distill", "late_fusion"]
    assert study.model_of == {"fsrf": "fsrf", "fsrf_default": "fsrf", "fsrf_no_distill": "fsrf",
                              "late_fusion": "late_fusion"}
    assert study.default_arms == {"fsrf": "fsrf_default"}
    assert set(spaces) == {"fsrf"}
    base = study.base_train_config("fsrf_no_distill", study.scenarios[0])
    assert base["model"] == {"name": "fsrf", "w_distill": 0.0}
    assert study.base_train_config("fsrf_default", study.scenarios[0])["model"] == {"name": "fsrf"}
    # warm start: mixed (both kinds) is searched first, the rest as listed
    assert [s.label for s in study.search_order()] == ["mixed", "intra", "inter"]
    plain, _, _ = load_study(str(write(tmp_path, "p.yaml", VARIANTS.replace("warm_start: true", "warm_start: false")
                                       .replace("default_arm: true", "default_arm: false"))))
    assert [s.label for s in plain.search_order()] == ["intra", "mixed", "inter"]
    assert "fsrf_default" not in plain.models and plain.default_arms == {}


@pytest.mark.parametrize("text, message", [
    (VARIANTS.replace("model: fsrf,", "model: fsfr,"), "models.fsrf_no_distill.model: unknown model 'fsfr'"),
    (VARIANTS.replace("fsrf_no_distill:", "fsrf_default:"), "models.fsrf_default: clashes with the default arm"),
    (VARIANTS.replace("fsrf_no_distill:", "fsrf__x:"), "models.fsrf__x: a label may not contain '__'"),
    (VARIANTS.replace("warm_start: true", "groups: [loss, regularization]"), "search.groups: ['regularization']"),
])
def test_bad_labels_and_groups_are_refused(tmp_path, text, message):
    path = write(tmp_path, "v.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_study(str(path))
    assert message in str(e.value) and str(path) in str(e.value)


def test_groups_select_the_regularisation_knobs(tmp_path):
    path = write(tmp_path, "v.yaml", VARIANTS)
    _, spaces, _ = load_study(str(path))
    assert "model.dropout" not in spaces["fsrf"].params and "train.lr" in spaces["fsrf"].params
    _, spaces, _ = load_study(str(path), overrides=["search.groups=[loss, regularisation]"])
    assert {"model.dropout", "train.weight_decay"} <= set(spaces["fsrf"].params)
    _, spaces, _ = load_study(str(path), overrides=["search.groups=[regularisation]"])
    assert set(spaces["fsrf"].params) == {"model.dropout", "train.weight_decay"}
    from raymsa.search.space import group_importances

    assert group_importances(load_space(SPACES_DIR / "fsrf.yaml"), {"train.lr": 0.25, "model.w_sim": 0.25,
                                                                    "model.dropout": 0.5}) == \
        {"loss": 0.5, "regularisation": 0.5}


def test_warm_start_takes_the_best_of_earlier_scenarios_only(tmp_path):
    import json

    from raymsa.study.runner import StudyRunner

    study, spaces, _ = load_study(str(write(tmp_path, "v.yaml", VARIANTS)))
    runner = StudyRunner(study, spaces, tmp_path / "out", resume=False)
    for sc, w in [("mixed", 0.3), ("inter", 0.7)]:  # inter comes after intra in the search order
        d = runner.search_dir("fsrf", sc)
        d.mkdir(parents=True)
        (d / "best.json").write_text(json.dumps({"params": {"model.w_sim": w}}))
    assert runner.warm_points("fsrf", "mixed", 0) == []
    assert runner.warm_points("fsrf", "intra", 0) == [{"from": "mixed", "params": {"model.w_sim": 0.3}}]
    assert [w["from"] for w in runner.warm_points("fsrf", "inter", 0)] == ["mixed"]
    assert runner.warm_points("fsrf", "intra", 1) == []  # repeat 1 starts from repeat 1's searches


class _T:
    def __init__(self, tid):
        self.trial_id = tid


def test_halving_rungs_count_judged_epochs():
    """A two-stage trial (NaN objective in its first stage) meets rung 2 at its second judged epoch,
    and is compared there with a one-stage trial's second epoch."""
    import math

    from ray.tune.schedulers import TrialScheduler

    from raymsa.search.halving import BatchedHalving

    h = BatchedHalving(metric="best_objective", mode="min", max_t=6, grace_period=2, reduction_factor=2, batch_size=1)
    a, b, c = _T("a"), _T("b"), _T("c")
    for t in (a, b, c):
        h.on_trial_add(None, t)
    for e, v in enumerate([1.0, 0.5], 1):  # one-stage: judged from epoch 1
        assert h.on_trial_result(None, a, {"epoch": e, "objective": v, "best_objective": v}) == TrialScheduler.CONTINUE
    nan = math.nan
    # two-stage: epochs 1-2 are its first stage (NaN), then worse than a at each judged epoch
    for e, v in [(1, nan), (2, nan), (3, 0.9)]:
        assert h.on_trial_result(None, b, {"epoch": e, "objective": v, "best_objective": v}) == TrialScheduler.CONTINUE
    assert h.on_trial_result(None, b, {"epoch": 4, "objective": 0.8, "best_objective": 0.8}) == TrialScheduler.STOP
    assert h.stopped == {"b": 4}
    # a trial better than a at its second judged epoch goes on, a repeated report changes nothing
    for e, v in [(1, nan), (2, 0.6), (3, 0.4), (3, 0.4)]:
        assert h.on_trial_result(None, c, {"epoch": e, "objective": v, "best_objective": v}) == TrialScheduler.CONTINUE


def test_a_resumed_search_does_not_queue_its_warm_start_twice(tmp_path):
    """A study killed after OptunaSearch enqueued its warm-start points keeps them as WAITING trials,
    which Optuna hands out first; enqueued again on --resume, each would run twice."""
    import optuna

    from raymsa.search.tune import _not_yet_queued

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    warm = [{"model.w_sim": 0.1234567891234, "train.lr": 2.1e-3}, {"model.w_sim": 0.5, "train.lr": 1e-3}]
    assert _not_yet_queued(warm, storage, "s") == warm  # a new study: every point runs
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial(warm[0])
    assert _not_yet_queued(warm, storage, "s") == [warm[1]]
    # a point the killed run already ran is queued again: its result went with the set-aside Tune run
    study.tell(study.ask(), 1.0)
    assert _not_yet_queued(warm, storage, "s") == warm

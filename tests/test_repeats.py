"""search.repeats: K searches per (model, scenario) with seeds seed..seed+K-1, and seed j of the
study retrained with repeat j mod K (no Ray: run_search is replaced by a recorder)."""

from __future__ import annotations

import json

import pytest

from raymsa.config import ConfigError
from raymsa.study import runner as R
from raymsa.study.config import load_study


def test_repeats_search_with_their_own_seeds_and_pair_with_seeds(tmp_path, monkeypatch):
    study, spaces, _ = load_study("compare", smoke=True, overrides=[
        "search.repeats=2", "search.seed=10", "seeds=[1, 2, 3]", "resources.max_concurrent=1",
        "scenarios=[{kind: intra, levels: [0.0, 0.5]}]"])
    calls = []

    def fake_search(space, base, data, tr, *, seed, study_name, **kw):
        calls.append((tr.name, seed, study_name))
        return {"params": {"train.lr": 1e-3 * (1 + seed)}, "value": 1.0 / (1 + seed), "importances": {},
                "group_importances": {},
                "trials": [{"trial": 1, "objective": 1.0, "epochs": 2}]}

    monkeypatch.setattr(R, "run_search", fake_search)
    run = R.StudyRunner(study, spaces, tmp_path, resume=False)
    sc = study.scenarios[0]
    bests = {(m, sc.label): [run.search(m, sc, r) for r in range(2)] for m in study.models}
    sseed = study.search.sampler_seed
    assert sorted(c[1] for c in calls if c[0].startswith("search__fsrf__")) == sorted([sseed("fsrf", "intra", 0),
                                                                                      sseed("fsrf", "intra", 1)])
    assert ("search__fsrf__intra__r1", sseed("fsrf", "intra", 1), "compare-smoke__fsrf__intra__r1") in calls
    # every search its own sampler stream: repeats, scenarios, models and base seeds all differ
    assert len({sseed("fsrf", "intra", 0), sseed("fsrf", "intra", 1), sseed("fsrf", "inter", 0),
                sseed("senti_ifusion", "intra", 0)}) == 4
    assert sseed("fsrf", "intra", 0) == study.search.sampler_seed("fsrf", "intra", 0)  # a function of its inputs
    assert study.search.model_copy(update={"seed": 11}).sampler_seed("fsrf", "intra", 0) != sseed("fsrf", "intra", 0)
    # repeat 0 keeps the layout of a study without repeats; repeat k has its own folder
    assert json.loads((tmp_path / "search/fsrf__intra/best.json").read_text())["search_seed"] == sseed("fsrf", "intra", 0)
    assert json.loads((tmp_path / "search/fsrf__intra/repeat1/best.json").read_text())["repeat"] == 1
    assert (tmp_path / "search/fsrf__intra/repeat1/trials.csv").exists()
    jobs = run.retrain_jobs(bests)
    ids = {seed: jobs[f"fsrf__intra__seed{seed}"].final_eval["meta"]["config_id"] for seed in (1, 2, 3)}
    r0, r1 = (b["config_id"] for b in bests["fsrf", "intra"])
    assert r0 != r1 and ids == {1: r0, 2: r1, 3: r0}
    lrs = {seed: jobs[f"fsrf__intra__seed{seed}"].base["train"]["lr"] for seed in (1, 2, 3)}
    lr0, lr1 = (1e-3 * (1 + sseed("fsrf", "intra", r)) for r in (0, 1))  # what fake_search suggested
    assert lrs == {1: pytest.approx(lr0), 2: pytest.approx(lr1), 3: pytest.approx(lr0)}


def test_more_repeats_than_seeds_is_refused():
    with pytest.raises(ConfigError, match="search.repeats"):
        load_study("compare", smoke=True, overrides=["search.repeats=3"])

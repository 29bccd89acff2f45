"""Seeds where they are needed: the seed plan parsed from a study file, and the runner's rounds
(which seeds, which runs, recorded before they run, stopping when nothing is open or at the cap)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from raymsa.study.config import SeedPlan, StudyConfig
from raymsa.study.runner import StudyRunner


def study(seeds):
    return StudyConfig.model_validate({
        "name": "t", "models": {"fsrf": {}, "late_fusion": {}}, "reference_model": "late_fusion",
        "scenarios": [{"kind": "intra"}, {"kind": "inter"}], "seeds": seeds,
        "resources": {"max_concurrent": 2}})


def test_a_list_keeps_its_meaning_and_a_plan_has_planned_looks():
    s = study([1, 2, 3]).seeds
    assert (s.initial, s.max, s.adaptive, s.looks()) == ([1, 2, 3], 3, False, [3])
    p = study({"initial": [1111, 1112, 1113], "max": 8, "step": 2}).seeds
    assert p.adaptive and p.looks() == [3, 5, 7, 8]
    assert p.next_seeds([1111, 1112, 1113], 3) == [1114, 1115]
    assert p.next_seeds([1111, 1112, 1113, 1114, 1115, 1116, 1117], 7) == [1118]  # capped at max


@pytest.mark.parametrize("bad, match", [({"initial": [1, 2], "max": 1}, "below"),
                                        ({"initial": [1, 1]}, "repeated"),
                                        ({"initial": []}, "initial")])
def test_bad_plans_are_refused_naming_the_key(bad, match):
    with pytest.raises(ValidationError, match=match):
        study(bad)


@dataclass
class D:
    model: str
    reference: str
    scenario: str
    open: bool


class Scripted(StudyRunner):
    """The runner's round logic with the retrains and the verdicts scripted: no Ray, no training."""

    def __init__(self, cfg, out, script):
        super().__init__(cfg, {}, out, resume=False, log=lambda *a: None)
        self.script, self.trained, self.ceilings = list(script), [], []

    def retrain(self, bests, rnd=None):
        rnd = rnd or self.rounds[0]
        # the round is in study.json before it runs (--resume continues it)
        on_disk = json.loads((self.out / "study.json").read_text())["rounds"]
        assert rnd in on_disk
        self.trained.append((tuple(rnd["seeds"]), tuple(rnd["runs"])))
        self.run_seconds.append(10.0)

    def write_ceiling(self):
        # a real ceiling costs seconds per seed; these tests only check that each round asks for one
        self.ceilings.append(sorted({seed for r in self.rounds for seed in r["seeds"]}))

    def open_pairs(self):
        decisions = self.script.pop(0)
        pairs = []
        for d in decisions:
            if d.open:
                pairs += [p for p in (f"{d.model}__{d.scenario}", f"{d.reference}__{d.scenario}") if p not in pairs]
        return pairs, decisions


def test_rounds_add_seeds_only_to_open_pairs_until_resolved(tmp_path):
    cfg = study({"initial": [1111, 1112, 1113], "max": 7, "step": 2})
    r = Scripted(cfg, tmp_path, [
        [D("fsrf", "late_fusion", "intra", True), D("fsrf", "late_fusion", "inter", False)],
        [D("fsrf", "late_fusion", "intra", False), D("fsrf", "late_fusion", "inter", False)],
    ])
    r.write_manifest()
    r.retrain({})
    r.add_rounds({})
    assert r.trained == [((1111, 1112, 1113), ("fsrf__intra", "late_fusion__intra", "fsrf__inter", "late_fusion__inter")),
                         ((1114, 1115), ("fsrf__intra", "late_fusion__intra"))]
    manifest = json.loads((tmp_path / "study.json").read_text())
    assert manifest["seeds"] == [1111, 1112, 1113, 1114, 1115]
    assert manifest["seed_plan"]["looks"] == [3, 5, 7]
    assert "fsrf vs late_fusion under intra" in manifest["rounds"][1]["why"]
    assert r.ceilings == [[1111, 1112, 1113, 1114, 1115]]  # the new seeds' ceiling after their round


def test_rounds_stop_at_the_cap_with_comparisons_still_open(tmp_path):
    cfg = study({"initial": [1, 2, 3], "max": 6, "step": 2})
    still = [D("fsrf", "late_fusion", "intra", True)]
    r = Scripted(cfg, tmp_path, [still, still, still, still])
    r.write_manifest()
    r.add_rounds({})
    assert [t[0] for t in r.trained] == [(4, 5), (6,)]  # 3 -> 5 -> 6 seeds, then the cap
    assert len(r.script) == 1  # asked once more after the last round, then stopped


def test_a_plain_list_runs_no_rounds(tmp_path):
    r = Scripted(study([1, 2]), tmp_path, [])
    r.write_manifest()
    r.add_rounds({})
    assert r.trained == []

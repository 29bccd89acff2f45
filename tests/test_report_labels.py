"""study.json's labels: model_of and default_arms, with the defaults older files get."""

from __future__ import annotations

import json

import pytest

from raymsa.report.load import ReportError, read_study_json

OLD = {"name": "s", "dataset": "mosi", "models": ["fsrf", "late_fusion"], "reference_model": "late_fusion",
       "seeds": [1], "scenarios": [{"name": "intra", "kind": "intra", "levels": [0.0]}]}


def write(tmp_path, d):
    p = tmp_path / "study.json"
    p.write_text(json.dumps(d))
    return p


def test_old_study_json_gets_identity_labels_and_no_arms(tmp_path):
    s = read_study_json(write(tmp_path, OLD))
    assert s.model_of == {"fsrf": "fsrf", "late_fusion": "late_fusion"} and s.default_arms == {}


def test_labels_and_default_arms_are_read(tmp_path):
    d = {**OLD, "models": ["fsrf", "fsrf_default", "no_distill", "late_fusion"],
         "model_of": {"fsrf": "fsrf", "fsrf_default": "fsrf", "no_distill": "fsrf", "late_fusion": "late_fusion"},
         "default_arms": {"fsrf": "fsrf_default"}}
    s = read_study_json(write(tmp_path, d))
    assert s.registry_name("no_distill") == "fsrf" and s.default_arms == {"fsrf": "fsrf_default"}


@pytest.mark.parametrize("extra, message", [
    ({"default_arms": {"fsrf": "fsrf_default"}}, "'default_arms': ['fsrf_default'] not among 'models'"),
    ({"model_of": ["fsrf"]}, "key 'model_of'"),
])
def test_bad_label_keys_name_the_file_and_key(tmp_path, extra, message):
    p = write(tmp_path, {**OLD, **extra})
    with pytest.raises(ReportError) as e:
        read_study_json(p)
    assert message in str(e.value) and str(p) in str(e.value)

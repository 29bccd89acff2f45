"""The embedded data's test-split size: another size is another dataset (cache key, source), train
and valid stay as they are, the Bayes ceiling is computed on the same test split, and a real file
refuses the option."""

from __future__ import annotations

import numpy as np
import pytest

from raymsa.config import ConfigError
from raymsa.data.ceiling import synthetic_test_split
from raymsa.data.default import default_data_path
from raymsa.data.synth import split_sizes, synthesize
from raymsa.train.config import DataConfig, parse_train_config


def test_test_size_changes_only_the_test_split():
    assert split_sizes("mosi", test_size=3000) == {"train": 1284, "valid": 229, "test": 3000}
    a = synthesize("mosi", seed=0, scale=0.05)
    b = synthesize("mosi", seed=0, scale=0.05, test_size=400)
    assert len(b["test"].labels) == 20  # 400 x scale
    for split in ("train", "valid"):
        assert np.array_equal(a[split].labels, b[split].labels)
        assert np.array_equal(a[split].audio, b[split].audio)
    assert "test=400" in b.source and "test=" not in a.source


def test_ceiling_sees_the_same_test_split():
    data = synthesize("mosi", seed=0, scale=0.05, test_size=400)
    gen = synthetic_test_split("mosi", 0, scale=0.05, test_size=400)
    assert np.array_equal(gen.raw["regression_labels"], data["test"].labels)


def test_cache_file_names_the_size(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMSA_CACHE", str(tmp_path))
    from raymsa.data import default as d

    monkeypatch.setattr(d, "write_synth", lambda path, *a, **k: path.write_bytes(b"x"))
    assert "_test2000_" in default_data_path("mosi", 0, 2000).name
    assert "_test" not in default_data_path("mosi", 0).name


def test_a_real_file_refuses_test_size():
    with pytest.raises(ConfigError, match="test_size"):
        parse_train_config({"model": {"name": "late_fusion"}, "scenario": "intra",
                            "data": {"path": "/x.pkl", "test_size": 900}}, "cfg.yaml")
    assert DataConfig(path="/x.pkl").synth_test_size is None

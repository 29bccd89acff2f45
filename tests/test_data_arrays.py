"""The study's data path: the MMSA file converted once to .npy files that trials memory-map
(raymsa.data.arrays, DataHandle(folder=...)); the driver keeps none of it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from raymsa.data import DataError, load_mmsa, write_synth
from raymsa.data.arrays import open_arrays, prepare_arrays
from raymsa.train.config import DataConfig


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("data") / "mosi_small.pkl", "mosi", seed=0, scale=0.05)


def test_converted_once_and_identical_to_the_file(small_file, tmp_path, monkeypatch):
    cfg = DataConfig(path=str(small_file))
    af = prepare_arrays(cfg, tmp_path)
    ref = load_mmsa(small_file)
    got = open_arrays(af.path)
    assert got.dataset == ref.dataset and af.nbytes == ref.nbytes
    for name in ("train", "valid", "test"):
        a, b = got[name], ref[name]
        assert a.ids == b.ids and a.raw_text == b.raw_text
        for field in ("text", "audio", "vision", "text_lengths", "audio_lengths", "vision_lengths", "labels"):
            x = getattr(a, field)
            assert isinstance(x, np.memmap) and not x.flags.writeable, field
            np.testing.assert_array_equal(x, getattr(b, field))
    # an unchanged file is never read again ...
    monkeypatch.setattr(DataConfig, "load", lambda self: pytest.fail("reloaded an unchanged file"))
    assert prepare_arrays(cfg, tmp_path).path == af.path
    monkeypatch.undo()
    # ... a changed one gets a folder of its own
    st = small_file.stat()
    os.utime(small_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert prepare_arrays(cfg, tmp_path).path != af.path
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written folder left


def test_a_missing_folder_names_itself_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"no such dataset folder on this node .* --storage must be a folder every node sees"):
        open_arrays(tmp_path / "gone")


def _probe(config, data):
    from ray import tune

    from raymsa.train.batches import SplitTensors

    split = data.get()["train"]
    t = SplitTensors.from_split(split, limit=16)
    tune.report({"memmap": int(all(isinstance(getattr(split, m), np.memmap) for m in ("text", "audio", "vision"))),
                 "writeable": int(split.text.flags.writeable),
                 # torch.from_numpy on the map: the tensor is the file's pages, not a copy
                 "shared": int(t.feats["text"].data_ptr() == split.text.ctypes.data)})


@pytest.mark.ray
def test_trials_memory_map_the_folder(ray_cluster, small_file, tmp_path):
    from ray import tune

    from raymsa.search.tune import DataHandle

    handle = DataHandle(folder=str(prepare_arrays(DataConfig(path=str(small_file)), tmp_path / "arrays").path))
    assert handle.store_bytes == 0  # nothing of the data goes through the object store
    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(_probe, data=handle), {"CPU": 1}),
                       tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=2),
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="probe", verbose=0))
    for r in tuner.fit():
        assert r.error is None, r.error
        assert r.metrics["memmap"] == 1 and r.metrics["writeable"] == 0 and r.metrics["shared"] == 1

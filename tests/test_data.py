"""raymsa.data: safe MMSA loading, the synthetic default, its structure, the cache and the CLI."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import pickle
import pickletools
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from raymsa.data import (
    DataError,
    default_data_path,
    guess_dataset,
    linear_probe,
    load_default,
    load_mmsa,
    save_mmsa,
    synthesize,
    synthesize_raw,
    write_synth,
)
from raymsa.data import default as default_module
from raymsa.data import mmsa as mmsa_module
from raymsa.data.__main__ import main
from raymsa.data.synth import GENERATOR_VERSION, LIKES, SEP_ID, _structure, reconstruction_r2, split_sizes

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # (T, D) per modality, from the MMSA files
    "mosi": {"text": (50, 768), "audio": (375, 5), "vision": (500, 20)},
    "mosei": {"text": (50, 768), "audio": (500, 74), "vision": (500, 35)},
    "sims": {"text": (39, 768), "audio": (400, 33), "vision": (55, 709)},
}


@pytest.fixture(scope="module")
def raw() -> dict:
    """A tiny MOSI-like MMSA dict (26/5/14 samples); tests deep-copy before changing it."""
    return synthesize_raw("mosi", seed=0, scale=0.02)


@pytest.fixture(scope="module")
def mosi():
    """The full-size MOSI-like default, for the label and structure tests."""
    return synthesize("mosi", seed=0)


def _dump(obj, path: Path, protocol: int = 4) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# ---- round trip and real-file quirks ------------------------------------------------------------


def test_round_trip_keeps_arrays_dtypes_and_lengths(raw, tmp_path):
    path = save_mmsa(raw, tmp_path / "mosi" / "unaligned_50.pkl")
    data = load_mmsa(path)
    assert data.dataset == "mosi" and data.source == str(path)
    assert data.seq_lens == {"text": 50, "audio": 375, "vision": 500}
    assert data.dims == {"text": 768, "audio": 5, "vision": 20}
    for name in ("train", "valid", "test"):
        split, src = data[name], raw[name]
        assert len(split) == len(src["regression_labels"])
        for m in ("text", "audio", "vision"):
            assert getattr(split, m).dtype == np.float32
            np.testing.assert_array_equal(getattr(split, m), src[m])
        assert split.text_bert.dtype == np.int64
        np.testing.assert_array_equal(split.text_bert, src["text_bert"])
        np.testing.assert_array_equal(split.text_lengths, src["text_bert"][:, 1].sum(axis=1))
        np.testing.assert_array_equal(split.audio_lengths, src["audio_lengths"])
        np.testing.assert_array_equal(split.vision_lengths, src["vision_lengths"])
        assert split.labels.dtype == np.float32
        np.testing.assert_array_equal(split.labels, src["regression_labels"])
        assert split.ids == list(src["id"]) and split.raw_text == list(src["raw_text"])
    assert not list(tmp_path.rglob("*.tmp"))


def test_lengths_are_derived_when_the_file_has_none(raw, tmp_path):
    stripped = copy.deepcopy(raw)
    for split in stripped.values():
        for key in ("audio_lengths", "vision_lengths", "text_bert"):
            del split[key]
    data = load_mmsa(_dump(stripped, tmp_path / "x.pkl"), dataset="mosi")
    train = raw["train"]
    np.testing.assert_array_equal(data["train"].audio_lengths, train["audio_lengths"])
    np.testing.assert_array_equal(data["train"].vision_lengths, train["vision_lengths"])
    # without token ids, text lengths come from the last non-zero feature row
    np.testing.assert_array_equal(data["train"].text_lengths, train["text_bert"][:, 1].sum(axis=1))
    assert not data.has_text_ids


def test_float64_features_and_float_stored_ids_are_cast(raw, tmp_path):
    odd = copy.deepcopy(raw)
    for split in odd.values():
        split["text"] = split["text"].astype(np.float64)
        split["vision"] = split["vision"].astype(np.float64)
        split["text_bert"] = split["text_bert"].astype(np.float64)
        split["audio_lengths"] = [float(v) for v in split["audio_lengths"]]
        split["regression_labels"] = split["regression_labels"].astype(np.float64)[:, None]
        split["id"] = np.arange(len(split["id"]), dtype=np.float64)
    data = load_mmsa(_dump(odd, tmp_path / "x.pkl"), dataset="mosi")
    train = data["train"]
    assert train.text.dtype == train.vision.dtype == train.labels.dtype == np.float32
    assert train.text_bert.dtype == train.audio_lengths.dtype == np.int64
    assert train.labels.shape == (len(train),)
    np.testing.assert_array_equal(train.text_bert, raw["train"]["text_bert"])
    assert train.ids[:3] == ["0", "1", "2"]


def test_non_integral_token_ids_are_an_error(raw, tmp_path):
    odd = copy.deepcopy(raw)
    odd["valid"]["text_bert"] = odd["valid"]["text_bert"] + 0.5
    with pytest.raises(DataError, match=r"split 'valid', key 'text_bert'.*non-integral"):
        load_mmsa(_dump(odd, tmp_path / "x.pkl"))


def test_infinite_audio_becomes_zero_and_is_logged(raw, tmp_path, caplog):
    odd = copy.deepcopy(raw)
    odd["train"]["audio"][0, :3, 0] = -np.inf  # inside the valid frames (lengths >= 4)
    odd["test"]["audio"][1, 0, 1] = np.inf
    with caplog.at_level(logging.WARNING, logger="raymsa.data.mmsa"):
        data = load_mmsa(_dump(odd, tmp_path / "x.pkl"))
    assert np.isfinite(data["train"].audio).all() and np.isfinite(data["test"].audio).all()
    assert (data["train"].audio[0, :3, 0] == 0).all() and data["test"].audio[1, 0, 1] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("'train'" in m and "set 3 infinite" in m for m in messages)
    assert any("'test'" in m and "set 1 infinite" in m for m in messages)


def test_aligned_glove_file_without_ids_or_lengths_loads(tmp_path):
    rng = np.random.default_rng(0)

    def split(n: int) -> dict:
        lengths = rng.integers(1, 51, n)
        valid = (np.arange(50)[None, :] < lengths[:, None])[:, :, None]
        feats = {m: rng.standard_normal((n, 50, d)) * valid for m, d in (("text", 300), ("audio", 5), ("vision", 20))}
        return {**feats, "regression_labels": rng.uniform(-3, 3, n), "id": [f"v{i}$_$1" for i in range(n)],
                "raw_text": ["x"] * n, "lengths": lengths}

    aligned = {s: split(n) for s, n in (("train", 12), ("valid", 4), ("test", 5))}
    data = load_mmsa(_dump(aligned, tmp_path / "aligned_50.pkl"))
    assert data.seq_lens == {"text": 50, "audio": 50, "vision": 50}
    assert data.dims["text"] == 300 and not data.has_text_ids
    for m in ("text", "audio", "vision"):
        np.testing.assert_array_equal(data["train"].lengths(m), aligned["train"]["lengths"])


def test_in_memory_float32_arrays_are_not_modified(raw):
    from raymsa.data import mmsa_from_dict

    odd = copy.deepcopy(raw)
    odd["train"]["audio"][0, 0, 0] = -np.inf
    data = mmsa_from_dict(odd, dataset="mosi")
    assert data["train"].audio[0, 0, 0] == 0 and odd["train"]["audio"][0, 0, 0] == -np.inf


# ---- errors name file, split and key ------------------------------------------------------------


def _set(split: str, key: str, fn):
    def change(d: dict) -> None:
        d[split][key] = fn(d[split][key])

    return change


def _drop_split(d: dict) -> None:
    del d["valid"]


def _drop_key(d: dict) -> None:
    del d["test"]["audio"]


def _nan_at(index):
    def fn(a):
        a = a.copy()
        a[index] = np.nan
        return a

    return fn


ERRORS = [
    (_drop_split, ["missing split", "valid"]),
    (_drop_key, ["split 'test'", "key 'audio'", "missing"]),
    (_set("train", "regression_labels", lambda a: a[:-1]), ["split 'train'", "key 'regression_labels'", "samples"]),
    (_set("valid", "vision", lambda a: a[:, :, 0]), ["split 'valid'", "key 'vision'", "3 dimensions"]),
    (_set("train", "audio_lengths", lambda a: a + 400), ["split 'train'", "key 'audio_lengths'", "outside [0, 375]"]),
    (_set("test", "vision_lengths", lambda a: a - 1000), ["split 'test'", "key 'vision_lengths'", "outside"]),
    (_set("train", "text", _nan_at((2, 0, 5))), ["split 'train'", "key 'text'", "1 NaN", "sample 2"]),
    (_set("valid", "regression_labels", _nan_at(1)), ["split 'valid'", "key 'regression_labels'", "NaN"]),
    (_set("test", "vision", lambda a: np.where(a == a.max(), np.inf, a)), ["split 'test'", "key 'vision'", "infinite"]),
    (_set("train", "text_bert", lambda a: a[:, :, :40]), ["split 'train'", "key 'text_bert'", "(N, 3, 50)"]),
    (_set("valid", "vision", lambda a: a[:, :, :10]), ["split 'valid'", "key 'vision'", "differs from train"]),
    (_set("train", "regression_labels", lambda a: a * 10), ["split 'train'", "key 'regression_labels'", "range"]),
]


@pytest.mark.parametrize("change,expected", ERRORS, ids=[", ".join(e[1][:2]) for e in ERRORS])
def test_bad_files_raise_data_errors_naming_file_split_and_key(raw, tmp_path, change, expected):
    bad = copy.deepcopy(raw)
    change(bad)
    path = _dump(bad, tmp_path / "bad.pkl")
    with pytest.raises(DataError) as err:
        load_mmsa(path, dataset="mosi")
    message = str(err.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message


def test_unreadable_files_raise_data_errors(raw, tmp_path):
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle at all")
    good = pickle.dumps(raw, protocol=4)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good[: len(good) // 2])
    not_dict = _dump([1, 2, 3], tmp_path / "list.pkl")
    for path, words in (
        (garbage, "not a readable pickle"),
        (truncated, "not a readable pickle"),
        (tmp_path / "missing.pkl", "no such file"),
        (tmp_path, "directory"),
        (not_dict, "expected a dict of splits"),
    ):
        with pytest.raises(DataError, match=words) as err:
            load_mmsa(path)
        assert str(path) in str(err.value)


# ---- safety -------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("how", ["os.system", "exec", "numpy.load"])
def test_malicious_pickle_is_refused_and_runs_nothing(raw, tmp_path, protocol, how):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "exec": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
        # an allowed module with a name outside the table is refused too
        "numpy.load": _Evil(np.load, str(marker)),
    }[how]
    evil = copy.deepcopy(raw)
    evil["train"]["id"] = payload  # hidden deep inside an otherwise valid file
    path = _dump(evil, tmp_path / "evil.pkl", protocol)
    with pytest.raises(DataError, match="refused to unpickle global") as err:
        load_mmsa(path)
    assert str(path) in str(err.value)
    refused = {"os.system": ("posix.system", "os.system"), "exec": ("builtins.exec", "__builtin__.exec"), "numpy.load": ("numpy.load",)}
    assert any(name in str(err.value) for name in refused[how])
    assert not marker.exists()


def _frameless(data: bytes) -> bytes:
    """Drop protocol-4+ FRAME opcodes (optional for readers) so strings can change length."""
    frames = [pos for op, _, pos in pickletools.genops(data) if op.name == "FRAME"]
    for pos in reversed(frames):
        data = data[:pos] + data[pos + 9 :]
    return data


def _as_numpy1(data: bytes, protocol: int) -> bytes:
    """Rewrite numpy 2's module paths (numpy._core) to numpy 1.x's (numpy.core)."""
    if protocol <= 2:  # GLOBAL opcodes: 'module\nname\n' text
        return data.replace(b"numpy._core.", b"numpy.core.")
    data = _frameless(data)
    for module in (b"multiarray", b"numeric"):
        new, old = b"numpy.core." + module, b"numpy._core." + module
        data = data.replace(bytes([0x8C, len(old)]) + old, bytes([0x8C, len(new)]) + new)
    return data


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("numpy1_paths", [False, True], ids=["numpy2-paths", "numpy1-paths"])
def test_pickles_of_every_protocol_and_numpy_generation_load(raw, tmp_path, protocol, numpy1_paths):
    extra = copy.deepcopy(raw)
    extra["train"]["annotations"] = {"Negative", "Positive"}  # a set: builtins.set under protocol 2
    extra["train"]["scalar"] = np.float32(1.5)  # numpy scalars use multiarray.scalar
    data = pickle.dumps(extra, protocol=protocol)
    if numpy1_paths:
        data = _as_numpy1(data, protocol)
        assert b"numpy._core" not in data and b"numpy.core.multiarray" in data
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    loaded = load_mmsa(path)
    np.testing.assert_array_equal(loaded["train"].audio, raw["train"]["audio"])
    np.testing.assert_array_equal(loaded["test"].text_bert, raw["test"]["text_bert"])
    assert loaded["valid"].ids == list(raw["valid"]["id"])


# ---- the synthetic data -------------------------------------------------------------------------


@pytest.mark.parametrize("like", ["mosi", "mosei", "sims"])
def test_synth_has_the_real_shapes_padding_and_token_layout(like):
    raw = synthesize_raw(like, seed=1, scale=0.01)
    spec = LIKES[like]
    assert {s: len(raw[s]["regression_labels"]) for s in raw} == split_sizes(like, 0.01)
    for split in raw.values():
        n = len(split["regression_labels"])
        for m, (steps, dim) in SHAPES[like].items():
            assert split[m].shape == (n, steps, dim) and split[m].dtype == np.float32
        ids, mask, segment = split["text_bert"][:, 0], split["text_bert"][:, 1], split["text_bert"][:, 2]
        lengths = {"text": mask.sum(axis=1), "audio": split["audio_lengths"], "vision": split["vision_lengths"]}
        t = np.arange(SHAPES[like]["text"][0])
        assert split["text_bert"].dtype == np.int64 and (segment == 0).all()
        np.testing.assert_array_equal(mask, t[None, :] < lengths["text"][:, None])
        assert (ids[:, 0] == 101).all() and (ids[np.arange(n), lengths["text"] - 1] == SEP_ID).all()
        inner = (t[None, :] > 0) & (t[None, :] < lengths["text"][:, None] - 1)
        assert ((ids[inner] >= spec.vocab[0]) & (ids[inner] < spec.vocab[1])).all()
        assert (ids[mask == 0] == 0).all()
        for m, lens in lengths.items():
            x = split[m]
            valid = np.arange(x.shape[1])[None, :] < lens[:, None]
            assert (x[~valid] == 0).all() and (np.abs(x[valid]).sum(axis=1) > 0).all()
        assert all("$_$" in i for i in split["id"]) and len(split["raw_text"]) == n
        np.testing.assert_array_equal(split["classification_labels"], np.sign(split["regression_labels"]) + 1)
    if like == "sims":
        assert {"regression_labels_T", "regression_labels_A", "regression_labels_V"} <= set(raw["train"])


def test_synth_lengths_vary_and_some_reach_full_length(mosi):
    for m in ("text", "audio", "vision"):
        lengths = np.concatenate([mosi[s].lengths(m) for s in ("train", "valid", "test")])
        steps = mosi.seq_lens[m]
        assert 0.005 < np.mean(lengths == steps) < 0.15, m
        assert np.median(lengths) < 0.6 * steps and lengths.min() >= 3, m


def test_synth_labels_sit_on_the_real_grid_with_some_exact_zeros(mosi):
    y = np.concatenate([mosi[s].labels for s in ("train", "valid", "test")]).astype(np.float64)
    assert y.min() >= -3 and y.max() <= 3 and y.min() < -2.5 and y.max() > 2.5
    np.testing.assert_allclose(y * 3, np.round(y * 3), atol=1e-5)
    assert 0.05 <= np.mean(y == 0) <= 0.10
    assert 1.2 < y.std() < 1.9
    sims = np.concatenate([synthesize_raw("sims", 0, 0.1)[s]["regression_labels"] for s in ("train", "valid", "test")])
    assert sims.min() >= -1 and sims.max() <= 1 and (sims == 0).any()
    np.testing.assert_allclose(sims * 5, np.round(sims * 5), atol=1e-5)


def test_same_seed_same_bytes_other_seed_other_data(raw, tmp_path):
    again = synthesize_raw("mosi", seed=0, scale=0.02)
    other = synthesize_raw("mosi", seed=1, scale=0.02)
    for split in raw:
        for key, value in raw[split].items():
            if value.dtype == object:  # ids and raw_text: strings
                assert list(value) == list(again[split][key]), (split, key)
            else:
                assert value.tobytes() == again[split][key].tobytes(), (split, key)
        assert not np.array_equal(raw[split]["text"], other[split]["text"])
        assert not np.array_equal(raw[split]["regression_labels"], other[split]["regression_labels"])
    # the lazily written file holds the same arrays, and writing twice gives the same bytes
    a = write_synth(tmp_path / "a.pkl", "mosi", seed=0, scale=0.02)
    b = write_synth(tmp_path / "b.pkl", "mosi", seed=0, scale=0.02)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    np.testing.assert_array_equal(load_mmsa(a)["test"].vision, raw["test"]["vision"])


def test_scale_shrinks_splits_never_shapes():
    assert split_sizes("mosei") == {"train": 16326, "valid": 1871, "test": 4659}
    assert split_sizes("sims", 0.1) == {"train": 137, "valid": 46, "test": 46}
    for bad in (0.0, -1.0, 1.5):
        with pytest.raises(DataError, match="scale"):
            split_sizes("mosi", bad)
    with pytest.raises(DataError, match="unknown --like"):
        synthesize_raw("iemocap")


def test_synth_structure_makes_missingness_matter(mosi):
    """v2 (re-measured on the MOSI-like default, docs/data.md): text carries most of the label even
    to a linear probe on frame means; audio and vision almost nothing to such a probe (their read-out
    sign depends on the speaker style, shown in text and vision, and their sentiment sits in a few
    salient frames), although the Bayes ceiling gets a lot from them (tests/test_ceiling.py)."""
    text = linear_probe(mosi, ["text"])
    audio, vision = linear_probe(mosi, ["audio"]), linear_probe(mosi, ["vision"])
    assert 0.6 < text < 0.85 and audio < 0.25 and vision < 0.25  # measured 0.702, 0.109, 0.066
    assert text > max(audio, vision) + 0.4  # text >> audio ~ vision
    # erasing frames degrades gradually: half the frames hurt, a tenth hurts a lot (0.56, 0.24)
    text_half, text_tenth = linear_probe(mosi, ["text"], keep=0.5), linear_probe(mosi, ["text"], keep=0.1)
    assert text - 0.35 > text_tenth and text_tenth < text_half - 0.15 and text_half < text - 0.05
    # audio and vision partly predict text (shared content and style): measured R^2 0.49
    assert reconstruction_r2(mosi, "text", ["audio", "vision"]) > 0.3


def test_synth_aligned_puts_every_modality_at_the_text_length():
    raw = synthesize_raw("mosi", seed=0, scale=0.02, aligned=True)
    for split in raw.values():
        n = len(split["regression_labels"])
        lengths = split["text_bert"][:, 1].sum(axis=1)
        for m, (_, dim) in SHAPES["mosi"].items():
            assert split[m].shape == (n, 50, dim)
        np.testing.assert_array_equal(split["audio_lengths"], lengths)
        np.testing.assert_array_equal(split["vision_lengths"], lengths)
        valid = np.arange(50)[None, :] < lengths[:, None]
        assert (split["audio"][~valid] == 0).all() and (np.abs(split["audio"][valid]).sum(axis=1) > 0).all()
    # the samples (labels, lengths of the text) are the unaligned dataset's
    plain = synthesize_raw("mosi", seed=0, scale=0.02)
    np.testing.assert_array_equal(plain["test"]["regression_labels"], raw["test"]["regression_labels"])
    np.testing.assert_array_equal(plain["test"]["text_bert"][:, 1], raw["test"]["text_bert"][:, 1])


def test_synth_token_ids_carry_sentiment(mosi):
    st = _structure(LIKES["mosi"], seed=0, like_index=0)
    train = mosi["train"]
    ids = train.text_bert[:, 0]
    polarity = np.isin(ids, st.positive_ids).sum(axis=1) - np.isin(ids, st.negative_ids).sum(axis=1)
    assert np.corrcoef(polarity, train.labels)[0, 1] > 0.6  # measured 0.73 (v2)


# ---- dataset guess ------------------------------------------------------------------------------


def test_dataset_guess(raw, tmp_path):
    mosi = load_mmsa(save_mmsa(raw, tmp_path / "data.pkl"))
    assert guess_dataset("data.pkl", mosi.splits)[0] == "mosi"
    assert guess_dataset("/d/MOSEI/Processed/unaligned_50.pkl", mosi.splits)[0] == "mosei"
    assert guess_dataset("/d/CH-SIMS/Processed/unaligned_39.pkl", mosi.splits)[0] == "sims"
    sims = synthesize("sims", 0, 0.01)
    assert guess_dataset("/d/whatever.pkl", sims.splits)[0] == "sims"
    mosei = synthesize("mosei", 0, 0.005)
    assert guess_dataset("/d/whatever.pkl", mosei.splits)[0] == "mosei"
    with pytest.raises(DataError, match="exceed sims's range"):
        load_mmsa(tmp_path / "data.pkl", dataset="sims")


# ---- saving and the cached default --------------------------------------------------------------


def test_save_is_atomic_when_writing_fails(raw, tmp_path):
    from raymsa.data import Deferred

    def boom() -> np.ndarray:
        raise RuntimeError("generator failed")

    broken = copy.deepcopy(raw)
    broken["test"]["vision"] = Deferred(boom)
    with pytest.raises(RuntimeError):
        save_mmsa(broken, tmp_path / "out.pkl")
    assert list(tmp_path.iterdir()) == []


def test_default_is_generated_once_cached_and_race_safe(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMSA_CACHE", str(tmp_path / "cache"))
    calls = []

    def small_write(path, like, seed, test_size=None):  # the real generator, shrunk to keep the test fast
        calls.append(path)
        return write_synth(path, like, seed, scale=0.02, test_size=test_size)

    monkeypatch.setattr(default_module, "write_synth", small_write)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(default_data_path("sims", 3))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(paths)) == 1
    assert paths[0] == tmp_path / "cache" / f"synth_sims_seed3_v{GENERATOR_VERSION}.pkl"
    data = load_default("sims", 3)
    assert data.dataset == "sims" and len(calls) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))


# ---- the CLI ------------------------------------------------------------------------------------


def test_cli_synth_then_check(tmp_path, capsys, monkeypatch):
    out = tmp_path / "s.pkl"
    assert main(["synth", "--like", "sims", "--out", str(out), "--seed", "2", "--scale", "0.01"]) == 0
    assert load_mmsa(out).dataset == "sims"
    capsys.readouterr()
    assert main(["check", str(out)]) == 0
    report = capsys.readouterr().out
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in report and "official no" in report
    assert "sims (guessed: labels within [-1, 1]" in report
    assert "(14, 400, 33)" in report and "float32" in report and "exact zeros" in report
    monkeypatch.setitem(mmsa_module.KNOWN_FILES, digest, ("sims", "SIMS/Processed/unaligned_39.pkl"))
    assert main(["check", str(out)]) == 0
    assert "official yes: SIMS/Processed/unaligned_39.pkl" in capsys.readouterr().out


def test_cli_errors_exit_2_with_one_line(raw, tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.pkl")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    evil = copy.deepcopy(raw)
    evil["test"]["raw_text"] = _Evil(os.system, "true")
    assert main(["check", str(_dump(evil, tmp_path / "evil.pkl"))]) == 2
    assert "refused to unpickle global" in capsys.readouterr().err
    assert main(["synth", "--like", "mosi", "--out", str(tmp_path / "x.pkl"), "--scale", "3"]) == 2
    for argv in (["synth", "--like", "imdb", "--out", "x"], ["check"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2


def test_cli_runs_as_a_module_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "raymsa.data", "check", str(bad)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {bad}: not a readable pickle")

"""Safe reading and writing of the field's MMSA feature pickles (MOSI, MOSEI, SIMS; aligned or not).

A pickle is a program: `pickle.load` on a file from the internet can run anything. `load_mmsa`
unpickles through `_SafeUnpickler`, which resolves only the handful of globals that numpy arrays and
plain containers need (a fixed table, never an import); any other global is refused before anything
from the file runs.

Layout (what `pickle.load` gives): {'train' | 'valid' | 'test': split}, each split a dict with the
sample axis first:

    text (N, Tl, Dl) float   text_bert (N, 3, Tl) ids/mask/segment (optional)
    audio (N, Ta, Da) float  audio_lengths (N,) (optional)   regression_labels (N,) float
    vision (N, Tv, Dv) float vision_lengths (N,) (optional)  id, raw_text (N,) str (optional)

Other keys (classification_labels, annotations, SIMS regression_labels_T/A/V) are ignored.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from raymsa.data.types import SPLITS, DataError, MMSAData, Split

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mosi", "mosei", "sims")
LABEL_RANGE: dict[str, float] = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}

# SHA-256 of the official MMSA feature files, copied from the "SHA-256 for feature files" list in
# section "2. Datasets" of the MMSA README (github.com/thuiar/MMSA, README.md at commit a94e65d0).
KNOWN_FILES: dict[str, tuple[str, str]] = {
    "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524": ("mosi", "MOSI/Processed/unaligned_50.pkl"),
    "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9": ("mosi", "MOSI/Processed/aligned_50.pkl"),
    "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f": ("mosei", "MOSEI/Processed/unaligned_50.pkl"),
    "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791": ("mosei", "MOSEI/Processed/aligned_50.pkl"),
    "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f": ("sims", "SIMS/Processed/unaligned_39.pkl"),
}

PICKLE_PROTOCOL = 5  # zero-copy arrays while writing (PickleBuffer); readable by Python >= 3.8

# Temporaries of the chunked checks stay around this size whatever the file's size.
_CHUNK_BYTES = 64 << 20


# ---- the restricted unpickler -------------------------------------------------------------------


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, qualname: str):
        super().__init__(qualname)
        self.qualname = qualname


def _numpy_core(submodule: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; files name either, the table maps both to what exists
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


def _latin1_encode(text: str, encoding: str) -> bytes:
    # Protocol 2 writes bytes as _codecs.encode(str, 'latin1'); allow that call and no other codec
    if encoding not in ("latin1", "latin-1"):
        raise _RefusedGlobal(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct  # protocols 2-4
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar  # numpy scalars
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    for builtins_module in ("builtins", "__builtin__"):  # protocol 2 names Python 2's module
        for name, obj in (("set", set), ("frozenset", frozenset), ("bytearray", bytearray)):
            table[(builtins_module, name)] = obj
    return table


class _SafeUnpickler(pickle.Unpickler):
    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedGlobal(f"persistent id {pid!r}")


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle `path` allowing only numpy arrays, numpy scalars and plain containers."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            # latin1: how numpy's own docs say to read Python 2 array pickles; Python 3 text is
            # stored as unicode opcodes and is unaffected
            return _SafeUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a pickle file") from None
    except _RefusedGlobal as e:
        raise DataError(
            f"{path}: refused to unpickle global {e.qualname}: an MMSA file holds only numpy arrays "
            "and plain containers, so this file is not one (nothing from it was run)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


# ---- hashing and the dataset guess --------------------------------------------------------------


def sha256_file(path: str | Path, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file, read in chunks (the official MOSEI files are several GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sims_like(split: Split) -> bool:
    # SIMS unaligned_39: text 39 steps, audio 33 dims, vision 709 dims; any one is telling
    return split.text.shape[1] == 39 or split.audio.shape[2] == 33 or split.vision.shape[2] == 709


def guess_dataset(path: str | Path, splits: Mapping[str, Split]) -> tuple[str, str]:
    """Guess the label convention of a file; returns (dataset, reason).

    In order: labels within [-1, 1] and SIMS-like shapes -> 'sims'; a path component naming exactly
    one of mosi / mosei / sims (from the file name upwards; MMSA keeps files as MOSI/Processed/...);
    MOSEI's feature dims (audio 74, vision 35) -> 'mosei'; otherwise 'mosi'. MOSI and MOSEI share
    the [-3, 3] metrics, so the last two steps only change the name in reports.
    """
    train = splits["train"]
    max_abs = max(float(np.abs(s.labels).max(initial=0.0)) for s in splits.values())
    if max_abs <= 1.0 and _sims_like(train):
        return "sims", "labels within [-1, 1] and SIMS-shaped features"
    for part in reversed(Path(path).parts):
        # chsims, ch-sims and sims all count; 'mosei' and 'mosi' do not contain one another
        named = [d for d in DATASETS if d in part.lower()]
        if len(named) == 1:
            return named[0], f"path component {part!r}"
    if train.audio.shape[2] == 74 and train.vision.shape[2] == 35:
        return "mosei", "MOSEI feature dims (audio 74, vision 35)"
    return "mosi", "default (no SIMS shapes, no dataset name in the path)"


# ---- dict -> validated Split --------------------------------------------------------------------


def _sample_chunks(x: np.ndarray) -> Iterator[slice]:
    per_sample = max(1, x[:1].nbytes)
    step = max(1, _CHUNK_BYTES // per_sample)
    for start in range(0, x.shape[0], step):
        yield slice(start, start + step)


def _last_nonzero_lengths(x: np.ndarray) -> np.ndarray:
    """(N,) index of the last frame with any non-zero value, plus one (0 when all zero)."""
    out = np.empty(x.shape[0], dtype=np.int64)
    for sl in _sample_chunks(x):
        nonzero = np.any(x[sl] != 0, axis=2)  # (n, T)
        last = x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
        out[sl] = np.where(nonzero.any(axis=1), last, 0)
    return out


class _SplitReader:
    """Reads one split dict; every error names the file, the split and the key."""

    def __init__(self, raw: Any, source: str, split: str, owned: bool):
        if not isinstance(raw, Mapping):
            raise DataError(f"{source}: split {split!r} is a {type(raw).__name__}, expected a dict")
        self.raw, self.source, self.split, self.owned = raw, source, split, owned
        self.n: int | None = None

    def error(self, key: str, msg: str) -> DataError:
        return DataError(f"{self.source}: split {self.split!r}, key {key!r}: {msg}")

    def _get(self, key: str) -> Any:
        if key not in self.raw:
            raise self.error(key, f"missing (keys present: {', '.join(sorted(map(str, self.raw)))})")
        return self.raw[key]

    def _check_n(self, key: str, n: int) -> None:
        if self.n is None:
            self.n = n
        elif n != self.n:
            raise self.error(key, f"{n} samples, but the split's other keys have {self.n}")

    def _array(self, key: str, value: Any, ndim: int) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise self.error(key, f"not an array ({e})") from None
        if arr.ndim != ndim:
            raise self.error(key, f"expected {ndim} dimensions, got shape {arr.shape}")
        self._check_n(key, arr.shape[0])
        return arr

    def features(self, key: str) -> np.ndarray:
        """(N, T, D) float32, finite; audio's infinities become 0 (real MOSEI audio holds -inf)."""
        raw = self._array(key, self._get(key), 3)
        if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise self.error(key, f"expected numbers, got dtype {raw.dtype}")
        x = np.asarray(raw, dtype=np.float32)
        # a float64 file gave us a fresh copy; a caller's float32 array must not be changed
        writable = self.owned or x is not raw
        # one float64 sum is far cheaper than elementwise checks and finite iff every value is
        if np.isfinite(x.sum(dtype=np.float64)):
            return x
        n_nan = n_inf = 0
        first_nan = -1
        for sl in _sample_chunks(x):
            nan = np.isnan(x[sl])
            if nan.any() and first_nan < 0:
                first_nan = sl.start + int(np.argmax(nan.any(axis=(1, 2))))
            n_nan += int(nan.sum())
            n_inf += int(np.isinf(x[sl]).sum())
        if n_nan:
            raise self.error(key, f"{n_nan} NaN values (first in sample {first_nan})")
        if key != "audio" and n_inf:
            raise self.error(key, f"{n_inf} infinite values")
        if n_inf:
            if not writable:
                x = x.copy()
            for sl in _sample_chunks(x):
                block = x[sl]
                block[np.isinf(block)] = 0.0
            log.warning("%s: split %r, key 'audio': set %d infinite values to 0", self.source, self.split, n_inf)
        return x

    def integers(self, key: str, value: Any, ndim: int) -> np.ndarray:
        arr = self._array(key, value, ndim)
        if np.issubdtype(arr.dtype, np.integer):
            return arr.astype(np.int64, copy=False)
        if not np.issubdtype(arr.dtype, np.floating):
            raise self.error(key, f"expected integers, got dtype {arr.dtype}")
        # some files store token ids and lengths as floats; accept them only when integral
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise self.error(key, "expected integers, found non-integral or non-finite values")
        return arr.astype(np.int64)

    def lengths(self, key: str, padded: int) -> np.ndarray | None:
        if key not in self.raw:
            return None
        value = self.raw[key]
        arr = np.asarray(value)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        lengths = self.integers(key, arr, 1)
        self.check_lengths(key, lengths, padded)
        return lengths

    def check_lengths(self, key: str, lengths: np.ndarray, padded: int) -> None:
        bad = np.flatnonzero((lengths < 0) | (lengths > padded))
        if bad.size:
            i = int(bad[0])
            raise self.error(
                key, f"length {int(lengths[i])} of sample {i} is outside [0, {padded}] (the padded size)"
            )

    def labels(self) -> np.ndarray:
        key = "regression_labels"
        arr = np.asarray(self._get(key))
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if not np.issubdtype(arr.dtype, np.number):
            raise self.error(key, f"expected numbers, got dtype {arr.dtype}")
        y = self._array(key, arr, 1).astype(np.float32)
        if not np.all(np.isfinite(y)):
            raise self.error(key, f"{int(np.sum(~np.isfinite(y)))} NaN or infinite labels")
        return y

    def strings(self, key: str, default: Callable[[int], str]) -> list[str]:
        if key not in self.raw:
            return [default(i) for i in range(self.n or 0)]
        values = list(np.asarray(self.raw[key], dtype=object).reshape(-1))
        self._check_n(key, len(values))
        return [_as_str(v) for v in values]

    def text_bert(self, padded: int) -> np.ndarray | None:
        key = "text_bert"
        if key not in self.raw:
            return None
        ids = self.integers(key, self.raw[key], 3)
        if ids.shape[1:] != (3, padded):
            raise self.error(key, f"expected shape (N, 3, {padded}) to match 'text', got {ids.shape}")
        if not np.isin(ids[:, 1], (0, 1)).all():
            raise self.error(key, "row 1 (the attention mask) holds values other than 0 and 1")
        return ids


def _as_str(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))  # ids stored as floats: 12.0 -> '12'
    return str(v)


def _read_split(raw: Any, source: str, split: str, owned: bool) -> Split:
    r = _SplitReader(raw, source, split, owned)
    text = r.features("text")
    audio = r.features("audio")
    vision = r.features("vision")
    labels = r.labels()
    text_bert = r.text_bert(text.shape[1])
    if text_bert is not None:
        text_lengths = text_bert[:, 1].sum(axis=1)
    else:
        text_lengths = _last_nonzero_lengths(text)
    audio_lengths = r.lengths("audio_lengths", audio.shape[1])
    vision_lengths = r.lengths("vision_lengths", vision.shape[1])
    return Split(
        text=text,
        audio=audio,
        vision=vision,
        text_lengths=text_lengths,
        audio_lengths=audio_lengths if audio_lengths is not None else _last_nonzero_lengths(audio),
        vision_lengths=vision_lengths if vision_lengths is not None else _last_nonzero_lengths(vision),
        labels=labels,
        ids=r.strings("id", lambda i: f"{split}_{i}"),
        raw_text=r.strings("raw_text", lambda i: ""),
        text_bert=text_bert,
    )


def _convert(raw: Any, source: str, dataset: str | None, owned: bool) -> MMSAData:
    if dataset is not None and dataset not in DATASETS:
        raise DataError(f"{source}: unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if not isinstance(raw, Mapping):
        raise DataError(f"{source}: top level is a {type(raw).__name__}, expected a dict of splits")
    missing = [s for s in SPLITS if s not in raw]
    if missing:
        raise DataError(f"{source}: missing split(s) {', '.join(missing)} (found: {', '.join(map(str, raw))})")
    splits = {s: _read_split(raw[s], source, s, owned) for s in SPLITS}
    for s in SPLITS[1:]:
        for m in ("text", "audio", "vision"):
            got, want = getattr(splits[s], m).shape[1:], getattr(splits["train"], m).shape[1:]
            if got != want:
                raise DataError(
                    f"{source}: split {s!r}, key {m!r}: per-sample shape {got} differs from train's {want}"
                )
    if dataset is None:
        dataset, _ = guess_dataset(source, splits)
    bound = LABEL_RANGE[dataset]
    for s, split in splits.items():
        if split.labels.size and float(np.abs(split.labels).max()) > bound + 1e-4:
            raise DataError(
                f"{source}: split {s!r}, key 'regression_labels': values up to "
                f"{float(np.abs(split.labels).max()):.3g} exceed {dataset}'s range [-{bound:g}, {bound:g}]"
            )
    return MMSAData(splits=splits, dataset=dataset, source=source)


def mmsa_from_dict(raw: Mapping[str, Any], source: str = "<dict>", dataset: str | None = None) -> MMSAData:
    """Validate an in-memory MMSA dict (the layout `pickle.load` gives) into `MMSAData`.

    The caller's arrays are never modified; float32 arrays are shared, not copied.
    """
    return _convert(raw, source, dataset, owned=False)


def load_mmsa(path: str | Path, dataset: str | None = None) -> MMSAData:
    """Load an MMSA feature pickle safely and validate it.

    `dataset` ('mosi' | 'mosei' | 'sims') is the label convention; None guesses it (see
    `guess_dataset`). Lengths missing from the file are derived from the arrays: text from the
    text_bert attention mask when present, else (like audio and vision) from the last non-zero frame.
    """
    raw = safe_unpickle(path)
    return _convert(raw, str(path), dataset, owned=True)


# ---- writing ------------------------------------------------------------------------------------


class Deferred:
    """An array made only when the pickler reaches it, so a file bigger than memory can be written.

    It pickles exactly as the array it makes (a reader sees a plain ndarray).
    """

    def __init__(self, make: Callable[[], np.ndarray]):
        self.make = make

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.make().__reduce_ex__(protocol)


def save_mmsa(splits: Mapping[str, Any], path: str | Path) -> Path:
    """Write `splits` ({'train', 'valid', 'test'} -> dict of arrays and lists) as an MMSA pickle.

    Atomic: the file appears complete under `path` or not at all. Values may be `Deferred`; each is
    made, written and freed in turn, so peak memory is about the largest single array.
    """
    path = Path(path)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"{path}: cannot save: missing split(s) {', '.join(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickler = pickle.Pickler(f, protocol=PICKLE_PROTOCOL)
            # fast mode keeps no memo, so nothing holds a written array alive (a memo would keep
            # every array until the end); MMSA dicts have no shared or self-referencing objects
            pickler.fast = True
            pickler.dump({s: dict(splits[s]) for s in SPLITS})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

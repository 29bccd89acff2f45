"""The dataset as a folder of .npy files that every trial memory-maps: one copy per node at any size.

A study converts its MMSA file once (`prepare_arrays`): the validated arrays are written one by one,
each dropped from the driver's heap as soon as it is on disk, into
`<root>/<file stem>-<key>/{split}.{array}.npy` beside a `meta.json` (dataset, source, ids, raw text).
The key is the source file's path, size and modification time, so a changed file is converted
anew and an unchanged one is never read again. Trials open the folder (`open_arrays`) with
`np.load(mmap_mode="r")`: the pages come from the node's page cache, shared by every process of
the node, and only the pages a trial touches are read (a smoke study's first `max_train` rows).

Why not Ray's object store: putting the arrays there costs the driver a second full copy while it
copies them in (the unpickled heap plus the store), the store is 30% of RAM by default and spills
the rest to /tmp, and a study that only needs a few rows would still publish everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from raymsa.data.types import SPLITS, DataError, MMSAData, Split

FORMAT = 1  # bump when the folder's layout changes: old folders are then not reused
ARRAYS = ("text", "audio", "vision", "text_lengths", "audio_lengths", "vision_lengths", "labels", "text_bert")


@dataclass(frozen=True)
class ArrayFolder:
    path: Path
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return int(self.meta["nbytes"])

    @property
    def dataset(self) -> str:
        return str(self.meta["dataset"])

    @property
    def source(self) -> str:
        return str(self.meta["source"])


def source_file(data_cfg) -> Path:
    """The MMSA file a DataConfig names (the embedded default is generated here if needed)."""
    from raymsa.data.default import default_data_path

    if data_cfg.path is None:
        return default_data_path(like=data_cfg.like, seed=data_cfg.synth_seed, test_size=data_cfg.synth_test_size)
    p = Path(data_cfg.path).expanduser().resolve()
    if not p.is_file():
        raise DataError(f"{data_cfg.path}: no such file (data.path)")
    return p


def folder_for(data_cfg, root: Path) -> Path:
    src = source_file(data_cfg)
    st = src.stat()
    ident = json.dumps([str(src), st.st_size, st.st_mtime_ns, data_cfg.dataset, data_cfg.like, FORMAT])
    return Path(root) / f"{src.stem}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"


def prepare_arrays(data_cfg, root: Path, log=None) -> ArrayFolder:
    """The .npy folder of `data_cfg`'s dataset under `root`, converting the file first if needed.

    Converting holds the loaded dataset once in this process and frees each array once written,
    so the peak is about one copy of the data (the unpickled file), never two. The file is loaded
    (and so checked) before anything is created under `root`: a bad file leaves no trace."""
    folder = folder_for(data_cfg, root)
    if (folder / "meta.json").is_file():
        return open_folder(folder)
    t0 = time.perf_counter()
    data = data_cfg.load()
    nbytes, source = data.nbytes, data.source
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "meta.json").is_file():  # another driver converted it while we loaded
            return open_folder(folder)
        write_arrays(data, folder, dataset=data_cfg.dataset)
    del data
    if log is not None:
        log(f"[raymsa] data: converted {source} ({nbytes / 2**20:.0f} MiB) to {folder} "
            f"in {time.perf_counter() - t0:.1f}s (done once per file; trials memory-map it)")
    return open_folder(folder)


def write_arrays(data: MMSAData, folder: Path, dataset: str | None = None) -> ArrayFolder:
    """Write `data` as a folder of .npy files, atomically; each array leaves `data` (and, when that
    was its last reference, memory) once it is on disk, so `data` is empty afterwards."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta: dict[str, Any] = {"format": FORMAT, "dataset": dataset or data.dataset, "source": data.source,
                            "nbytes": data.nbytes, "splits": {}}
    try:
        for name in SPLITS:
            split = data.splits.pop(name)
            meta["splits"][name] = {"n": len(split), "ids": split.ids, "raw_text": split.raw_text,
                                    "arrays": [a for a in ARRAYS if getattr(split, a) is not None]}
            for a in meta["splits"][name]["arrays"]:
                np.save(tmp / f"{name}.{a}.npy", np.ascontiguousarray(getattr(split, a)))
                setattr(split, a, None)  # freed now, not at the end: the peak stays one copy
            del split
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_folder(folder)


def open_folder(folder: Path) -> ArrayFolder:
    meta_path = Path(folder) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{folder}: no such dataset folder on this node (host {os.uname().nodename}); on a cluster the "
            f"study's --storage must be a folder every node sees at the same path (docs/cluster.md)") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT}; delete the folder to redo it")
    return ArrayFolder(Path(folder), meta)


def open_arrays(folder: str | Path) -> MMSAData:
    """The dataset of a prepared folder, its arrays read-only memory maps of the .npy files."""
    af = open_folder(Path(folder))
    splits = {}
    for name, info in af.meta["splits"].items():
        arrays = {a: np.load(af.path / f"{name}.{a}.npy", mmap_mode="r") for a in info["arrays"]}
        splits[name] = Split(**arrays, ids=list(info["ids"]), raw_text=list(info["raw_text"]))
    return MMSAData(splits=splits, dataset=af.dataset, source=af.source)

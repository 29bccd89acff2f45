"""The data every study uses when it names none: a synthetic MMSA file generated once and cached.

The cache lives in $RAYMSA_CACHE (default ~/.cache/raymsa). File names carry the generator version,
so a changed generator never reuses a stale file. Several processes (Ray workers, parallel test
runs) may ask at once: a file lock makes one of them generate while the others wait, and the file
itself appears atomically (see save_mmsa).
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from raymsa.data.mmsa import load_mmsa
from raymsa.data.synth import GENERATOR_VERSION, write_synth
from raymsa.data.types import MMSAData


def cache_dir() -> Path:
    return Path(os.environ.get("RAYMSA_CACHE", "~/.cache/raymsa")).expanduser()


def default_data_path(like: str = "mosi", seed: int = 0, test_size: int | None = None) -> Path:
    """Path of the cached synthetic dataset, generating it first if needed (MOSI-like: ~2 s). A
    test split of another size is another file (its name says the size)."""
    size = "" if test_size is None else f"_test{test_size}"
    path = cache_dir() / f"synth_{like}_seed{seed}{size}_v{GENERATOR_VERSION}.pkl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():  # another process may have written it while we waited
            write_synth(path, like, seed, test_size=test_size)
    return path


def load_default(like: str = "mosi", seed: int = 0, test_size: int | None = None) -> MMSAData:
    return load_mmsa(default_data_path(like, seed, test_size), dataset=like)

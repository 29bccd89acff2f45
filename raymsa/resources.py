"""Where the studies, search spaces and training configs a user names live.

One source of truth: the top-level folders `studies/`, `search_spaces/` and `configs/` of the
repository, where people read and edit them. The wheel carries them as package data
(pyproject.toml maps `raymsa.studies` to `studies/` and so on), so an installed raymsa has them at
`raymsa/studies/...`; a checkout (editable install or PYTHONPATH) reads the top-level folders.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from raymsa.config import ConfigError

KINDS = ("studies", "search_spaces", "configs")


def packaged_dir(kind: str) -> Path:
    """The folder of packaged `kind` files: the installed package's copy, else the checkout's folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    installed = importlib.resources.files("raymsa") / kind
    if installed.is_dir():
        return Path(str(installed))
    # a checkout: raymsa/ sits beside the top-level folders that the wheel copies
    return Path(__file__).resolve().parents[1] / kind


def _candidates(name: str, folder: Path) -> list[Path]:
    p = Path(name)
    names = [p, p.with_suffix(".yaml")] if p.suffix == "" else [p]
    return [p if p.is_absolute() else folder / p for p in names]


def resolve_path(name: str, folders: list[Path], what: str, source: str = "") -> Path:
    """The first file that `name` (with or without .yaml) names in `folders`, in order; an absolute
    path is taken as it is. The error lists every folder that was looked in."""
    if Path(name).is_absolute():
        folders = folders[:1]
    for folder in folders:
        for c in _candidates(name, folder):
            if c.is_file():
                return c
    looked = ", ".join(str(f) for f in dict.fromkeys(folders))
    raise ConfigError(f"{source}{name}: no such {what} (looked in {looked})")


def resolve_named(name: str, kind: str, what: str, source: str = "") -> Path:
    """A file the user names on the command line: a path (from the current folder) or a packaged name."""
    return resolve_path(name, [Path.cwd(), packaged_dir(kind)], what, source)

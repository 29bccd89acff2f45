"""No import runs up the layers: every `import` in raymsa (module level, inside functions, under
TYPE_CHECKING alike) names a module of its own layer or a lower one. A new module outside the
prefixes below fails here until it is given a layer (and docs/architecture.md says where)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "raymsa"

# Lowest first; a module belongs to the longest prefix that names it ("raymsa": the package's
# __init__ only). Not the order of a study's
# stages (data -> missing -> ... -> report): the Bayes ceiling in data uses missing's masks, and
# the study builds the report, so missing sits below data and report below study.
LAYERS: list[tuple[str, ...]] = [
    ("raymsa.config", "raymsa.batch", "raymsa.metrics", "raymsa.resources", "raymsa.cluster"),
    ("raymsa.missing",),
    ("raymsa.data",),
    ("raymsa.models",),
    ("raymsa.train",),
    ("raymsa.faults",),
    ("raymsa.search",),
    ("raymsa.report",),
    ("raymsa.study",),
    ("raymsa.cli", "raymsa"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file()


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, raymsa module) of every import in `source`, the module `module`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for a in node.names:
                # `from raymsa import metrics` imports the module raymsa.metrics, not the package
                sub = f"{base}.{a.name}"
                out.append((node.lineno, sub if is_module(sub) else base))
    return [(line, name) for line, name in out if name == "raymsa" or name.startswith("raymsa.")]


def layer_of(name: str) -> int | None:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for p in prefixes:
            # the bare package name is its __init__ alone, not a prefix of every module
            covers = name == p or (p != "raymsa" and name.startswith(p + "."))
            if covers and (best is None or len(p) > len(best[1])):
                best = (rank, p)
    return None if best is None else best[0]


def upward_imports(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        mod = module_name(f)
        here = layer_of(mod)
        if here is None:
            bad.append(f"{f.relative_to(ROOT)}: module {mod} has no layer (tests/test_layers.py LAYERS)")
            continue
        for line, name in imported(f.read_text(), mod, f.name == "__init__.py"):
            there = layer_of(name)
            if there is None or there > here:
                bad.append(f"{f.relative_to(ROOT)}:{line}: {mod} (layer {here}) imports {name} (layer {there})")
    return bad


def test_no_import_runs_up_the_layers():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40  # the walk found the package
    assert upward_imports(files) == []


def test_the_check_sees_upward_imports_at_any_depth(tmp_path, monkeypatch):
    """The two imports that once ran upward, written as they were (one inside a function), are found."""
    fake = tmp_path / "raymsa"
    for rel, text in {
        "__init__.py": "",
        "data/__init__.py": "",
        "data/ceiling.py": "def rows():\n    from raymsa.train.evaluate import level_key\n",
        "train/__init__.py": "",
        "train/evaluate.py": "",
        "train/__main__.py": "import os\nif os:\n    from raymsa.study import cluster\n",
        "study/__init__.py": "",
        "study/cluster.py": "from . import guard\nfrom raymsa import metrics\n",
        "study/guard.py": "",
        "metrics.py": "",
        "newstage.py": "",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    bad = upward_imports(sorted(fake.rglob("*.py")))
    assert bad == [
        "raymsa/data/ceiling.py:2: raymsa.data.ceiling (layer 2) imports raymsa.train.evaluate (layer 4)",
        "raymsa/newstage.py: module raymsa.newstage has no layer (tests/test_layers.py LAYERS)",
        "raymsa/train/__main__.py:3: raymsa.train.__main__ (layer 4) imports raymsa.study.cluster (layer 8)",
    ]


def test_architecture_doc_states_the_same_layers():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    m = re.search(r"^imports, lowest first: (.+)$", doc, re.M)
    assert m, "docs/architecture.md: no 'imports, lowest first:' line"
    stated = [tuple(x.strip().strip("`") for x in layer.split(",")) for layer in m.group(1).split(" < ")]
    assert stated == LAYERS

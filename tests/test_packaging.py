"""Packaging: the packaged studies, spaces and configs are found by name from anywhere; a user's own
study resolves its spaces beside it first; the `raymsa` console script; and the wheel, installed
into a fresh venv with no checkout on the path, runs the smoke study from an unrelated folder."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from raymsa.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_in_the_wheel_list():
    """pyproject.toml lists packages by hand (because of the package-dir mapping): a new subpackage
    left out of the list would be missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "raymsa").rglob("*")
               if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))} | {"raymsa"}
    assert on_disk <= listed, f"not in pyproject.toml [tool.setuptools] packages: {sorted(on_disk - listed)}"
    for kind in ("studies", "search_spaces", "configs"):
        assert cfg["package-dir"][f"raymsa.{kind}"] == kind and (ROOT / kind).is_dir()
        assert cfg["package-data"][f"raymsa.{kind}"] == ["*.yaml"]


def test_packaged_names_resolve_from_any_folder(tmp_path, monkeypatch):
    from raymsa.resources import packaged_dir, resolve_named
    from raymsa.study.config import load_study

    monkeypatch.chdir(tmp_path)
    assert packaged_dir("studies") == ROOT / "studies"  # a checkout reads the top-level folders
    study, spaces, path = load_study("fsrf_sweep", smoke=True)
    assert path == ROOT / "studies" / "fsrf_sweep.yaml" and "fsrf" in spaces
    assert resolve_named("fsrf_intra", "configs", "training config") == ROOT / "configs" / "fsrf_intra.yaml"
    with pytest.raises(ConfigError, match=r"nope: no such study file \(looked in .*, .*studies\)"):
        load_study("nope")


def test_a_users_study_finds_its_own_spaces_first(tmp_path, monkeypatch):
    from raymsa.study.config import load_study

    mine = tmp_path / "my_project"
    mine.mkdir()
    raw = (ROOT / "studies" / "fsrf_sweep.yaml").read_text()
    raw = raw.replace("name: fsrf_sweep", "name: mine").replace("late_fusion: {}", "late_fusion: {search_space: late_fusion}")
    (mine / "study.yaml").write_text(raw)
    # a space of the same name beside the study wins over the packaged one
    (mine / "fsrf.yaml").write_text("params:\n  train.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}\n")
    monkeypatch.chdir(tmp_path)
    study, spaces, path = load_study("my_project/study.yaml")
    assert study.name == "mine" and path == mine / "study.yaml"
    assert list(spaces["fsrf"].params) == ["train.lr"]
    # late_fusion's space is not beside it: the packaged one
    from raymsa.search.space import load_space

    packaged = load_space(ROOT / "search_spaces" / "late_fusion.yaml").select(study.search.groups)
    assert spaces["late_fusion"].params == packaged.params
    (mine / "study.yaml").write_text(raw.replace("search_space: fsrf.yaml", "search_space: missing_space"))
    with pytest.raises(ConfigError, match=r"models\.fsrf\.search_space: missing_space: no such search space "
                                          r"\(looked in .*my_project, .*search_spaces\)"):
        load_study(str(mine / "study.yaml"))


def test_console_script_forwards_to_each_main(capsys):
    from raymsa.cli import main

    assert main([]) == 2 and "study" in capsys.readouterr().out
    assert main(["nonsense"]) == 2 and "unknown command 'nonsense'" in capsys.readouterr().err
    assert main(["report", "/nonexistent/study"]) != 0
    with pytest.raises(SystemExit) as e:
        main(["study", "--help"])
    assert e.value.code == 0 and "--smoke" in capsys.readouterr().out


@pytest.mark.heavy
@pytest.mark.slow
@pytest.mark.ray
def test_the_wheel_runs_the_smoke_study_from_an_unrelated_folder(tmp_path):
    """pip wheel -> a fresh venv -> `raymsa study fsrf_sweep --smoke` from a folder that is not the
    checkout. The venv gets the shared venv's dependencies through a plain .pth path line (which
    does not run that site-packages' own .pth files, so the shared editable raymsa stays out); the
    test asserts that raymsa is imported from the new venv."""
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = tmp_path / "src"
    for rel in ["pyproject.toml", "README.md"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes((ROOT / rel).read_bytes())
    for folder in ["raymsa", "studies", "search_spaces", "configs"]:
        for f in (ROOT / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                (src / f.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
                (src / f.relative_to(ROOT)).write_bytes(f.read_bytes())
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True)
    (wheel,) = wheels.glob("raymsa-*.whl")

    # no checkout on any path: not for pip (which would take the checkout's raymsa as installed), not for the study
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAY_AUTH_MODE"] = "disabled"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    # installed before the dependencies' path is added, so pip sees no other raymsa
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, env=env, cwd=tmp_path)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, env=env).stdout.strip())
    assert (site / "raymsa" / "cli.py").is_file()
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(py), "-c", "import raymsa, raymsa.resources as r; "
                            "print(raymsa.__file__); print(r.packaged_dir('studies'))"],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert Path(where[0]).is_relative_to(site), where  # not the checkout
    assert Path(where[1]) == site / "raymsa" / "studies" and (Path(where[1]) / "fsrf_sweep.yaml").is_file()

    run = subprocess.run([str(venv / "bin" / "raymsa"), "study", "fsrf_sweep", "--smoke", "--storage", "out",
                          "--set", "scenarios=[{kind: intra, levels: [0.0, 0.5]}]", "--set", "seeds=[1111]",
                          "--set", "search.trials=1"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"({site / 'raymsa' / 'studies' / 'fsrf_sweep.yaml'})" in run.stdout
    out = elsewhere / "out" / "fsrf_sweep-smoke"
    assert (out / "report" / "report.html").is_file()
    runs = sorted(p.parent.name for p in (out / "runs").glob("*/eval.csv"))
    # fsrf (tuned), its default arm and late_fusion, one seed
    assert [r.split("__")[0] for r in runs] == ["fsrf", "fsrf_default", "late_fusion"], runs

"""Shared fixtures: one small synthetic dataset and one Ray cluster per test session.

Two tiers, both run by CI (.ci/run) on every run:
- quick (`make test`, plain `python -m pytest`): everything not marked `heavy`; must end within
  240 s on 2 cores.
- heavy (`make test-heavy`, `python -m pytest -m heavy`): tests marked `@pytest.mark.heavy`.

Mark a test `heavy` when it runs a whole study to the end, starts its own Ray or cluster (not the
`ray_cluster` fixture), builds a wheel or a venv, or takes more than ~10 s on 2 cores; a whole
module: `pytestmark = [pytest.mark.heavy, ...]`. `ray` marks a test that needs a Ray cluster (take
the session's `ray_cluster` fixture rather than starting one), `slow` one of several seconds.
A quick-tier test that needs a study run to the end takes the `lifecycle` fixture below (one smoke
study, run once per session, interrupted, killed and resumed on the way; its stages are checked in
tests/test_study.py; `lifecycle["out"]` is its folder) rather than running another. Running a heavy
test by name needs `-m heavy` (or `-m ''`), or the default selection leaves it out.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Keep Ray's side effects inside the test session: no auth token in ~/.ray, no usage stats.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_data():
    """A MOSI-shaped synthetic dataset with few samples (real shapes, small N)."""
    from raymsa.data.synth import synthesize

    return synthesize("mosi", seed=0, scale=0.08)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray instance for every test that needs Ray (starting one costs ~5 s)."""
    import ray

    from raymsa.search.tune import DRIVER_RESOURCE

    if ray.is_initialized():
        ray.shutdown()
    # workers must import functions defined in test modules (e.g. fault-injecting Train workers)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    pythonpath = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=True, resources={DRIVER_RESOURCE: 100},
             _temp_dir=str(tmp_path_factory.mktemp("ray")), configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield ray
    ray.shutdown()


# ---- the lifecycle study -------------------------------------------------------------------------

# two scenarios with short grids and one seed keep the lifecycle under a minute or two on 2 cores;
# one trial at a time opens a window to interrupt the first search in after its first trial
LIFECYCLE = ["--smoke", "--set", "scenarios=[{kind: intra, levels: [0.0, 0.5]}, {kind: subset}]",
             "--set", "seeds=[1111]", "--set", "search.optuna_storage=true", "--set", "search.trials=2",
             "--set", "search.max_concurrent=1"]


def _lifecycle_cmd(storage, *extra):
    return [sys.executable, "-m", "raymsa.study", "fsrf_sweep", "--storage", str(storage), *LIFECYCLE, *extra]


def _in_process(argv) -> tuple[int, str]:
    """study_main in this process (a refusal happens before Ray starts): exit code and stderr."""
    from raymsa.study.__main__ import main as study_main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = study_main(argv)
    return rc, err.getvalue()


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc (Linux)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(d.name)] = (int(fields[1]), fields[19])  # ppid, starttime
    return out


def _descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its start time (a pid reused later is another process)."""
    table, found, todo = _proc_table(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in table.items():
            if ppid == parent and child not in found:
                found[child] = start
                todo.append(child)
    return found


def _alive(procs: dict[int, str]) -> list[str]:
    out = []
    for pid, start in procs.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            out.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
    return out


@pytest.fixture(scope="session")
def lifecycle(tmp_path_factory, ray_cluster):
    """The smoke study through every fault a user meets, one stage after another; what each stage
    saw, for the tests below to check. Stages: 1 Ctrl-C after the first trial (its own local Ray);
    2 --resume on the session's cluster, a second driver tried while it runs, SIGKILL once the first
    search's best.json exists; 3 a rerun without --resume; 4 --resume to the end."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    out = tmp / "fsrf_sweep-smoke"
    search = out / "search" / "fsrf__intra"
    best = search / "best.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    address = ray_cluster.get_runtime_context().gcs_address
    seen: dict = {"out": out}

    # 1: Ctrl-C after the first trial of the first search
    log_path = tmp / "first.log"
    with open(log_path, "w") as log:
        # its own local Ray (no --address), so that what it leaves behind is its own
        first = subprocess.Popen(_lifecycle_cmd(tmp), stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
    try:
        deadline = time.time() + 120
        while "search: 1/2 trials done" not in log_path.read_text() and first.poll() is None:
            assert time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        assert first.poll() is None, log_path.read_text()[-3000:]
        ray_procs = _descendants(first.pid)
        seen["ray_procs"] = dict(ray_procs)  # the driver's local Ray: gcs_server, raylet, workers ...
        os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        seen["rc1"] = first.wait(timeout=90)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    seen["log1"] = log_path.read_text()
    seen["after1"] = {"best": best.exists(), "trials": (search / "trials.csv").exists(),
                      "evals": list(out.glob("runs/*/eval.csv"))}
    deadline = time.time() + 20
    while _alive(ray_procs) and time.time() < deadline:
        time.sleep(0.5)
    seen["left1"] = _alive(ray_procs)
    seen["created"] = json.loads((out / "study.json").read_text())["created"]

    # 2: --resume; a second driver while it runs; SIGKILL once the first search has finished
    resumed = subprocess.Popen(_lifecycle_cmd(tmp, "--resume", "--address", address), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines: list[str] = []
    held = threading.Event()

    def drain():
        for line in resumed.stdout:
            lines.append(line)
            if line.startswith("[raymsa] study "):  # the driver holds the lock once it prints this
                held.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.time() + 120
        while not held.is_set() and resumed.poll() is None and time.time() < deadline:
            held.wait(0.2)
        assert held.is_set(), "".join(lines)[-3000:]
        # with --resume, so that the refusal is the lock's (without it is the same lock, checked
        # before the folder's contents)
        seen["second"] = _in_process(["fsrf_sweep", "--storage", str(tmp), *LIFECYCLE, "--resume",
                                      "--address", address])
        seen["second_pid"] = resumed.pid
        seen["second_touched"] = (out / "tune" / "search__fsrf__intra.interrupted-2").exists()
        deadline = time.time() + 150
        while not best.exists() and resumed.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert best.exists(), "".join(lines)[-3000:]
        os.killpg(resumed.pid, signal.SIGKILL)  # mid-study, with later phases pending
        resumed.wait()
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
            resumed.wait()
    reader.join(10)
    seen["log2"] = "".join(lines)
    seen["kept"] = (best.read_bytes(), best.stat().st_mtime_ns)

    # 3: without --resume the study refuses to touch the folder
    seen["refused"] = _in_process(["fsrf_sweep", "--storage", str(tmp), *LIFECYCLE])
    seen["after3"] = best.read_bytes()

    # 4: --resume to the end
    done = subprocess.run(_lifecycle_cmd(tmp, "--resume", "--address", address), capture_output=True,
                          text=True, env=env, timeout=300)
    seen["rc4"], seen["log4"] = done.returncode, done.stdout + done.stderr
    return seen

"""Faults end cleanly (issue 14): one driver per study folder, bad data refused before Ray starts with
nothing written, failures no retry can fix not retried. An interrupt, a second driver, a killed
driver and --resume on a real study: tests/test_study.py (the lifecycle study)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raymsa.study.__main__ import main as study_main

def _bad_files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (--set value, what the error must say)"""
    (tmp_path / "empty.pkl").write_bytes(b"")
    (tmp_path / "truncated.pkl").write_bytes(pickle.dumps({"train": {"text": [1.0] * 100}})[:20])

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    (tmp_path / "schema.pkl").write_bytes(pickle.dumps({"train": {}, "valid": {}}))
    (tmp_path / "adir").mkdir()
    return {
        "missing": (str(tmp_path / "nope.pkl"), "no such file"),
        "directory": (str(tmp_path / "adir"), "is a directory"),
        "empty": (str(tmp_path / "empty.pkl"), "empty file"),
        "truncated": (str(tmp_path / "truncated.pkl"), "not a readable pickle"),
        "hostile": (str(tmp_path / "evil.pkl"), "refused to unpickle"),
        "schema": (str(tmp_path / "schema.pkl"), "missing split"),
        "empty path": ("", "empty value for data.path"),
    }


def test_bad_data_is_refused_before_ray_with_nothing_written(tmp_path, capsys, monkeypatch):
    import raymsa.study.__main__ as cli

    def no_ray(address):
        raise AssertionError("Ray was started for a study whose data is bad")

    monkeypatch.setattr(cli, "start_ray", no_ray)
    storage = tmp_path / "results"
    for name, (value, says) in _bad_files(tmp_path).items():
        rc = study_main(["fsrf_sweep", "--smoke", "--storage", str(storage), "--set", f"data.path={value}"])
        err = capsys.readouterr().err
        assert rc == 2, (name, err)
        assert says in err and (not value or value in err), (name, err)
        assert not storage.exists(), name  # nothing written, not even the study folder
    assert not (tmp_path / "pwned").exists()


def test_a_folder_with_only_a_manifest_counts_as_empty(tmp_path, capsys):
    """A study that failed before its first phase left study.yaml/study.json (and the lock file):
    the corrected rerun is not refused. A folder with results is, without --resume."""
    from raymsa.study.guard import LOCK_NAME, holds_results

    out = tmp_path / "fsrf_sweep-smoke"
    out.mkdir()
    for f in ("study.yaml", "study.json", LOCK_NAME):
        (out / f).write_text("{}")
    assert not holds_results(out)
    (out / "search").mkdir()
    assert holds_results(out)
    rc = study_main(["fsrf_sweep", "--smoke", "--storage", str(tmp_path)])
    assert rc == 2 and "--resume" in capsys.readouterr().err


def test_second_driver_is_refused_by_the_lock(tmp_path):
    """The lock is held for the driver's life, by another process here, and names its holder."""
    from raymsa.study.guard import StudyBusy, StudyLock

    out = tmp_path / "s"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from raymsa.study.guard import StudyLock\n"
        f"lock = StudyLock(Path({str(out)!r})); lock.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyBusy, match=f"being run by pid {holder.pid} on host {os.uname().nodename}"):
            StudyLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = StudyLock(out)  # the kernel released it with its holder
    lock.acquire()
    lock.release()


def test_set_errors_name_the_flag(tmp_path, capsys):
    rc = study_main(["fsrf_sweep", "--storage", str(tmp_path), "--set", "search.trials=zero"])
    err = capsys.readouterr().err
    assert rc == 2 and "--set search.trials=zero: search.trials" in err and "fsrf_sweep.yaml" not in err
    assert not any(tmp_path.iterdir())  # nothing written for a refused study
    rc = study_main(["fsrf_sweep", "--storage", str(tmp_path), "--set", "seeds=[1,1]"])
    assert rc == 2 and "--set seeds=[1,1]: seeds: repeated seed" in capsys.readouterr().err


def test_fatal_causes_are_told_apart():
    from raymsa.config import ConfigError
    from raymsa.faults import fatal_cause
    from raymsa.train.loop import NonFiniteLossError

    assert "NonFiniteLossError" in fatal_cause(NonFiniteLossError("epoch 1 step 2: total loss is nan"))
    full = OSError(errno.ENOSPC, "No space left on device", "/mnt/results/x/state.pt")
    assert fatal_cause(full) == "no space left on device: /mnt/results/x/state.pt"
    assert fatal_cause(OSError(errno.EROFS, "Read-only file system")).startswith("read-only file system")
    try:
        try:
            raise ConfigError("trial config: train.epochs: must be >= 1")
        except ConfigError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert "ConfigError: trial config" in fatal_cause(e)
    # a Ray Train worker's error arrives as text inside another exception
    assert "NonFiniteLossError: boom" in fatal_cause(RuntimeError("Traceback ...\nNonFiniteLossError: boom\n"))
    # what a retry may fix stays retryable
    assert fatal_cause(ConnectionError("node lost")) is None
    assert fatal_cause(OSError(errno.ECONNRESET, "reset")) is None


@pytest.mark.ray
def test_a_fatal_trial_error_is_not_retried_and_stops_the_run(tmp_path, ray_cluster, tiny_data):
    """A trial whose config its loop refuses (a ConfigError, as a NaN loss or a full disk would be)
    runs once, not max_failures + 1 times, and the run ends with the cause and the Tune run's path."""
    import ray

    from raymsa.faults import FatalError
    from raymsa.search.tune import DataHandle, Job, TrialResources, TuneRun, run_jobs

    base = {"model": {"name": "late_fusion", "variant": "tiny"}, "data": {"max_train": 32, "max_eval": 16},
            "scenario": {"kind": "intra", "levels": [0.0]}, "train": {"epochs": 0}}
    tr = TuneRun(tmp_path / "tune", "retrain", TrialResources(), max_concurrent=1, max_failures=2)
    t0 = time.perf_counter()
    with pytest.raises(FatalError, match="ConfigError.*train.epochs") as err:
        run_jobs({"bad": Job(base)}, DataHandle(ray.put(tiny_data)), tr)
    assert str(tmp_path / "tune" / "retrain") in str(err.value)
    rows = [json.loads(x) for f in (tmp_path / "tune" / "retrain").glob("*/result.json")
            for x in f.read_text().splitlines() if x.strip()]
    assert len(rows) == 1 and rows[0]["fatal"]  # one attempt, no retry
    assert not list((tmp_path / "tune" / "retrain").glob("*/error.txt"))
    assert time.perf_counter() - t0 < 60


def test_divergence_is_flagged(tmp_path):
    """A validation or test MAE beyond the label range's width (6 on -3..3) is flagged: trials.csv's
    'diverged' column, best.json's list, the console, and a note in the report."""
    from raymsa.report.load import diverged_notes, read_study_json
    from raymsa.study.config import load_study
    from raymsa.study.runner import StudyRunner

    study, spaces, _ = load_study("fsrf_sweep", smoke=True)
    lines = []
    runner = StudyRunner(study, spaces, tmp_path, resume=False, log=lines.append)
    runner.label_range = (-3.0, 3.0)
    rows = [{"trial_id": "a", "objective": 1.4}, {"trial_id": "b", "objective": 77.4},
            {"trial_id": "c", "objective": float("nan")}]
    assert runner.flag_diverged(rows) == ["b"]
    assert [r["diverged"] for r in rows] == [False, True, False]
    assert any("1 trial(s) diverged" in ln and "b" in ln for ln in lines)

    (tmp_path / "study.json").write_text(json.dumps({
        "name": "s", "dataset": "mosi", "models": ["fsrf"], "seeds": [1],
        "scenarios": [{"name": "intra", "kind": "intra", "levels": [0.0]}]}))
    (tmp_path / "search" / "fsrf__intra").mkdir(parents=True)
    (tmp_path / "search" / "fsrf__intra" / "best.json").write_text(json.dumps({"diverged_trials": ["b"]}))
    results = pd.DataFrame([
        {"model": "fsrf", "scenario": "intra", "seed": 1, "split": "test", "metric": "MAE", "value": 77.4},
        {"model": "fsrf", "scenario": "intra", "seed": 2, "split": "test", "metric": "MAE", "value": 1.4}])
    notes = diverged_notes(tmp_path, read_study_json(tmp_path / "study.json"), results)
    assert len(notes) == 2 and "search/fsrf__intra: 1 trial(s)" in notes[0]
    assert "run fsrf__intra__seed1: test MAE up to 77.4" in notes[1]


def test_too_little_free_space_is_refused_before_anything(tmp_path, capsys, monkeypatch):
    from raymsa.faults import FatalError, check_free_space

    monkeypatch.setenv("RAYMSA_MIN_FREE_MB", str(10**12))  # more than any disk has
    storage = tmp_path / "results"
    rc = study_main(["fsrf_sweep", "--smoke", "--storage", str(storage)])
    err = capsys.readouterr().err
    assert rc == 2 and "MiB free" in err and str(storage) in err
    assert not storage.exists()
    with pytest.raises(FatalError, match="retrain"):
        check_free_space(tmp_path, "retrain")  # what each phase calls first
    monkeypatch.setenv("RAYMSA_MIN_FREE_MB", "1")
    check_free_space(tmp_path, "retrain")


def test_an_error_on_a_full_disk_is_fatal(tmp_path, monkeypatch):
    """torch.save on a full disk raises a RuntimeError without errno: the free space tells."""
    from raymsa.faults import fatal_cause

    err = RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file")
    monkeypatch.setenv("RAYMSA_MIN_FREE_MB", "1")
    assert fatal_cause(err, tmp_path) is None
    monkeypatch.setenv("RAYMSA_MIN_FREE_MB", str(10**12))
    cause = fatal_cause(err, tmp_path)
    assert cause.startswith(f"no space left on device: {tmp_path}") and "PytorchStreamWriter" in cause

"""`python -m raymsa.study` end to end, as a user runs it: a smoke study killed mid-run and resumed
without redoing or losing what finished; the report, TensorBoard files and Optuna study present."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raymsa.study.config import STUDIES_DIR

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# two scenarios with short grids and one seed keep the end-to-end run under a minute on 2 cores
SMALL = ["--set", "scenarios=[{kind: intra, levels: [0.0, 0.5]}, {kind: subset}]", "--set", "seeds=[1111]",
         "--set", "search.optuna_storage=true"]


def study_cmd(name, storage, *extra):
    return [sys.executable, "-m", "raymsa.study", name, "--smoke", "--storage", str(storage), *extra]


def test_smoke_study_killed_and_resumed(tmp_path, ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    out = tmp_path / "fsrf_sweep-smoke"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(study_cmd("fsrf_sweep", tmp_path, "--address", address, *SMALL),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    # kill the driver as soon as the first search has finished: mid-study, with later phases pending
    best = out / "search" / "fsrf__intra" / "best.json"
    deadline = time.time() + 150
    while not best.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert best.exists(), first.communicate()[0].decode()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kept = best.read_bytes()
    kept_mtime = best.stat().st_mtime_ns

    # without --resume the study refuses to touch the folder
    refused = subprocess.run(study_cmd("fsrf_sweep", tmp_path, "--address", address, *SMALL),
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert best.read_bytes() == kept

    resumed = subprocess.run(study_cmd("fsrf_sweep", tmp_path, "--address", address, "--resume", *SMALL),
                             capture_output=True, text=True, env=env, timeout=300)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-4000:]
    # the finished search was not redone
    assert "search fsrf under intra" not in log
    assert best.read_bytes() == kept and best.stat().st_mtime_ns == kept_mtime

    # every (model, scenario, seed) ran and was tested under both scenarios
    results = pd.read_csv(out / "report" / "results.csv")
    runs = results.groupby(["model", "scenario", "seed"]).size()
    assert len(runs) == 3 * 2 * 1  # fsrf, its default arm fsrf_default, late_fusion
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["default_arms"] == {"fsrf": "fsrf_default"} and manifest["model_of"]["fsrf_default"] == "fsrf"
    # warm start: subset's search ran intra's best config first and marks that trial
    intra_best = json.loads(best.read_text())["params"]
    warm = pd.read_csv(out / "search" / "fsrf__subset" / "trials.csv").fillna({"warm_start": ""})
    first = warm[warm["warm_start"] == "intra"]
    assert len(first) == 1 and all(first.iloc[0][f"config/{k}"] == v for k, v in intra_best.items())
    assert set(results["eval_scenario"]) == {"intra", "subset"}
    assert set(results.loc[results.eval_scenario == "subset", "level"]) == {"l", "a", "v", "la", "lv", "av", "lav"}
    html = (out / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Effective robustness" in html
    # on the embedded synthetic data the study wrote the Bayes ceiling once, and the report uses it
    ceiling = pd.read_csv(out / "ceiling.csv")
    assert set(ceiling["scenario"]) == {"intra", "subset"} and set(ceiling["seed"]) == {1111}
    assert "Distance to the Bayes ceiling" in html and "Bayes ceiling" in html
    assert "| fsrf" in log  # the summary table printed at the end

    # Tune's TensorBoard event files for every trial, and Optuna's study in its database
    events = list((out / "tune").rglob("events.out.tfevents.*"))
    trial_dirs = {p.parent for p in (out / "tune").rglob("result.json")}
    assert trial_dirs and all(any(e.parent == d for e in events) for d in trial_dirs)
    import optuna

    summaries = optuna.get_all_study_summaries(f"sqlite:///{out / 'optuna.db'}")
    assert {s.study_name for s in summaries} >= {"fsrf_sweep-smoke__fsrf__intra", "fsrf_sweep-smoke__fsrf__subset"}
    assert all(s.n_trials >= 2 for s in summaries)


@pytest.mark.parametrize("name", sorted(p.stem for p in STUDIES_DIR.glob("*.yaml") if p.stem != "fsrf_sweep"))
def test_every_other_study_smokes(tmp_path, ray_cluster, name):
    """Every shipped study's smoke mode runs end to end (fsrf_sweep's is above), on one scenario."""
    address = ray_cluster.get_runtime_context().gcs_address
    done = subprocess.run(study_cmd(name, tmp_path, "--address", address, "--set",
                                    "scenarios=[{kind: inter, levels: [0.0, 0.3]}]", "--set", "seeds=[1111]",
                                    "--set", "search.trials=1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    summary = pd.read_csv(tmp_path / f"{name}-smoke" / "report" / "summary.csv")
    assert set(summary["model"]) >= {"late_fusion"} and len(set(summary["model"])) >= 2


def test_bad_study_flag_and_path_are_refused(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "raymsa.study", "no_such_study"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no_such_study: no such study file" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "raymsa.study", "fsrf_sweep", "--set", "search.trials=zero",
                          "--storage", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "search.trials" in bad.stderr
    assert not any(Path(tmp_path).iterdir())  # nothing written for a refused study


def test_multi_worker_trials_run_under_ray_train(tmp_path, ray_cluster):
    """workers_per_trial > 1: each trial drives a 2-worker DDP TorchTrainer and relays its reports."""
    address = ray_cluster.get_runtime_context().gcs_address
    done = subprocess.run(study_cmd("fsrf_sweep", tmp_path, "--address", address,
                                    "--set", "scenarios=[{kind: intra, levels: [0.0, 0.5]}]",
                                    "--set", "seeds=[1111]", "--set", "resources.workers_per_trial=2",
                                    # one search trial and fsrf alone: each TorchTrainer start costs
                                    # ~15 s, and one retrain run exercises the same path again
                                    "--set", "search.trials=1", "--set", "reference_model=null",
                                    "--set", "models={fsrf: {search_space: fsrf.yaml, config: {variant: tiny}}}"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = tmp_path / "fsrf_sweep-smoke"
    # the Train runs sit on the study's storage (not a node-local trial folder), one per retrain trial
    train_runs = list((out / "tune" / "retrain" / "train").iterdir())
    assert len(train_runs) == 1 and all((r / "result.json").exists() for r in train_runs)
    results = pd.read_csv(out / "report" / "results.csv")
    assert set(results["model"]) == {"fsrf"} and set(results["seed"]) == {1111}


def test_a_parallel_search_is_reproducible(tmp_path, ray_cluster):
    """Two trials at a time: the same search run twice suggests the same configs (batched
    suggestions), stops them at the same epochs (halving against earlier batches only) and they reach
    the same objectives. (With ASHA and unbatched TPE, two `make study` runs picked different FSRF
    configs under intra and inter.)"""
    from raymsa.study.config import load_study
    from raymsa.study.runner import StudyRunner

    runs = []
    for i in range(2):
        study, spaces, _ = load_study("fsrf_sweep", smoke=True, overrides=[
            "search.trials=4", "search.startup_trials=2", "search.grace_period=1", "search.max_concurrent=2",
            "train.epochs=3", "scenarios=[{kind: intra, levels: [0.0, 0.5]}]"])
        out = tmp_path / f"run{i}"
        out.mkdir()
        runner = StudyRunner(study, spaces, out, resume=False)
        runner.load_data()
        scenario = study.scenarios[0]
        best = runner.search("fsrf", scenario)
        trials = pd.read_csv(runner.search_dir("fsrf", scenario.label) / "trials.csv").drop(columns="trial_id")
        runs.append((best, trials))
        # two at a time: some trial started before another one's last report (whole-second stamps)
        spans = sorted((rows[0]["timestamp"] - rows[0]["time_this_iter_s"], rows[-1]["timestamp"])
                       for f in (runner.tune_dir / f"search__fsrf__{scenario.label}").glob("*/result.json")
                       for rows in [[json.loads(x) for x in f.read_text().splitlines() if x.strip()]])
        assert len(spans) == 4 and any(b[0] < a[1] - 1.0 for a, b in zip(spans, spans[1:])), spans
    (best0, trials0), (best1, trials1) = runs
    assert len(trials0) == 4 and (trials0["status"] == "DONE").all()
    pd.testing.assert_frame_equal(trials0, trials1, check_exact=True)
    assert best0["params"] == best1["params"] and best0["objective"] == best1["objective"]

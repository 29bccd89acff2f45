"""`python -m raymsa.study` end to end, as a user runs it. One lifecycle study serves the fault
checks: interrupted (Ctrl-C) in its first search, resumed while a second driver is refused, killed
(SIGKILL) once that search has finished, refused without --resume, then resumed to the end without
redoing or losing what finished; the report, TensorBoard files and Optuna study present. The
lifecycle study itself runs in tests/conftest.py's `lifecycle` fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import yaml
import pytest

from raymsa.study.config import DEFAULT_SUFFIX, STUDIES_DIR


def study_cmd(name, storage, *extra):
    return [sys.executable, "-m", "raymsa.study", name, "--smoke", "--storage", str(storage), *extra]


@pytest.mark.ray
@pytest.mark.slow
def test_an_interrupt_is_no_result_and_leaves_no_ray(lifecycle):
    """Ctrl-C after the first trial of a search: rc 130, the message, no best.json or trials.csv for
    that search, no run results, no Ray process of the driver left."""
    s = lifecycle
    text = s["log1"]
    assert s["rc1"] == 130, text[-3000:]
    assert text.rstrip().endswith("interrupted; rerun with --resume"), text[-3000:]
    assert "Tuner.restore" not in text and "Traceback" not in text, text[-3000:]
    assert s["after1"] == {"best": False, "trials": False, "evals": []}
    assert s["ray_procs"] and not s["left1"], s["left1"]


@pytest.mark.ray
@pytest.mark.slow
def test_a_second_driver_is_refused_while_one_runs(lifecycle):
    rc, err = lifecycle["second"]
    assert rc == 2, err
    assert f"being run by pid {lifecycle['second_pid']} on host {os.uname().nodename}" in err
    assert not lifecycle["second_touched"]  # the second driver set nothing aside


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_study_is_refused_without_resume_and_resumes_without_redoing_work(lifecycle):
    s = lifecycle
    out, kept, mtime = s["out"], *s["kept"]
    rc, err = s["refused"]
    assert rc == 2 and "--resume" in err, err
    assert s["after3"] == kept
    log = s["log4"]
    assert s["rc4"] == 0, log[-4000:]
    assert "Traceback" not in log and "Exception ignored" not in log, log[-4000:]
    assert "Traceback" not in s["log2"], s["log2"][-4000:]  # the interrupted search resumed cleanly
    assert "A new study created" not in log + s["log2"]  # Optuna's noise is quieted
    # the finished search was not redone
    assert "search fsrf under intra" not in log
    best = out / "search" / "fsrf__intra" / "best.json"
    assert best.read_bytes() == kept and best.stat().st_mtime_ns == mtime
    # the interrupted search was run again in full by the first --resume, its old folder set aside
    trials = pd.read_csv(out / "search" / "fsrf__intra" / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "DONE").all() and (trials["epochs"] >= 1).all()
    assert json.loads(best.read_text())["n_trials"] == 2
    assert (out / "tune" / "search__fsrf__intra.interrupted-1").is_dir()  # set aside, not deleted
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["created"] == s["created"] and len(manifest["resumed"]) == 2
    assert "retrain: 6/6 trials done" in log, log[-4000:]  # fsrf, fsrf_default, late_fusion x 2 scenarios


@pytest.mark.ray
@pytest.mark.slow
def test_the_resumed_study_has_every_result_and_its_report(lifecycle):
    s = lifecycle
    out, log = s["out"], s["log4"]
    assert s["rc4"] == 0, log[-4000:]
    # every (model, scenario, seed) ran and was tested under both scenarios
    results = pd.read_csv(out / "report" / "results.csv")
    runs = results.groupby(["model", "scenario", "seed"]).size()
    assert len(runs) == 3 * 2 * 1  # fsrf, its default arm fsrf_default, late_fusion
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["default_arms"] == {"fsrf": "fsrf_default"} and manifest["model_of"]["fsrf_default"] == "fsrf"
    # warm start: subset's search ran intra's best config first and marks that trial
    intra_best = json.loads((out / "search" / "fsrf__intra" / "best.json").read_text())["params"]
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
    # timing.csv: a start-up record for every search trial, each under its own trial id (a trial the
    # scheduler stopped once wrote its record under the id None); the interrupted run's trials keep
    # theirs (what they cost was spent), each naming a trial of that run's set-aside folder
    timing = pd.read_csv(out / "timing.csv", keep_default_na=False)
    for scenario in ["intra", "subset"]:
        trials = pd.read_csv(out / "search" / f"fsrf__{scenario}" / "trials.csv")
        startup = set(timing.loc[(timing.phase == f"search__fsrf__{scenario}") & (timing.part == "trial_startup"), "trial"])
        ran = {d.name.split("_")[2] for run in (out / "tune").glob(f"search__fsrf__{scenario}*")
               for d in run.glob("_trial_*")}
        assert set(trials["trial_id"].astype(str)) <= startup <= ran, (startup, ran)

    # Tune's TensorBoard event files for every trial, and Optuna's study in its database
    events = list((out / "tune").rglob("events.out.tfevents.*"))
    trial_dirs = {p.parent for p in (out / "tune").rglob("result.json")}
    assert trial_dirs and all(any(e.parent == d for e in events) for d in trial_dirs)
    import optuna

    summaries = optuna.get_all_study_summaries(f"sqlite:///{out / 'optuna.db'}")
    assert {s.study_name for s in summaries} >= {"fsrf_sweep-smoke__fsrf__intra", "fsrf_sweep-smoke__fsrf__subset"}
    assert all(s.n_trials >= 2 for s in summaries)


@pytest.mark.heavy
@pytest.mark.ray
@pytest.mark.slow
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
    manifest = yaml.safe_load((STUDIES_DIR / f"{name}.yaml").read_text())
    # every declared model (ablations have no late_fusion) plus the reference; anything else is a
    # declared model's untuned arm
    expected = set(manifest["models"]) | ({manifest.get("reference_model")} - {None})
    extra = set(summary["model"]) - expected
    assert set(summary["model"]) >= expected and len(expected) >= 2
    assert all(m.endswith(DEFAULT_SUFFIX) and m[: -len(DEFAULT_SUFFIX)] in manifest["models"] for m in extra), extra
    assert (manifest.get("search") or {}).get("default_arm", False) or not extra, extra


def test_a_bad_study_name_is_refused_by_the_command():
    """The command's exit code and message (refused --set values: test_faults.test_set_errors_name_the_flag)."""
    bad = subprocess.run([sys.executable, "-m", "raymsa.study", "no_such_study"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no_such_study: no such study file" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.heavy
@pytest.mark.ray
@pytest.mark.slow
def test_multi_worker_trials_run_under_ray_train(tmp_path, ray_cluster):
    """workers_per_trial > 1: each trial drives a 2-worker DDP TorchTrainer and relays its reports."""
    address = ray_cluster.get_runtime_context().gcs_address
    done = subprocess.run(study_cmd("fsrf_sweep", tmp_path, "--address", address,
                                    "--set", "scenarios=[{kind: intra, levels: [0.0, 0.5]}]",
                                    "--set", "seeds=[1111]", "--set", "resources.workers_per_trial=2",
                                    # one search trial and fsrf alone: each TorchTrainer start costs
                                    # ~15 s, and one retrain run exercises the same path again
                                    "--set", "search.trials=1", "--set", "reference_model=null",
                                    "--set", "search.default_arm=false",
                                    "--set", "models={fsrf: {search_space: fsrf.yaml, config: {variant: tiny}}}"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = tmp_path / "fsrf_sweep-smoke"
    # the Train runs sit on the study's storage (not a node-local trial folder), one per retrain trial
    train_runs = list((out / "tune" / "retrain" / "train").iterdir())
    assert len(train_runs) == 1 and all((r / "result.json").exists() for r in train_runs)
    results = pd.read_csv(out / "report" / "results.csv")
    assert set(results["model"]) == {"fsrf"} and set(results["seed"]) == {1111}


@pytest.mark.heavy
@pytest.mark.ray
@pytest.mark.slow
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

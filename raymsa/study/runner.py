"""The phases of a study, each writing its results atomically so that `--resume` redoes nothing
that finished and a failure never destroys finished results:

    1. search, for each scenario and model
                -> search/<model>__<scenario>/best.json, trials.csv   (Optuna in Tune, validation only)
    2. retrain, all (model, scenario, seed) runs of the initial seeds in one Tune run
                -> runs/<model>__<scenario>__seed<S>/eval.csv, run.json (best config retrained per seed, tested
                                                                       on its grid and every other scenario)
    2b. rounds (seeds: {initial, max, step} only): while a headline comparison is still open
        (raymsa.report.verdicts.headline_decisions), `step` more seeds for its two runs' (model,
        scenario); each round is written to study.json before it starts, so --resume continues it
    3. report   -> report/                                            (raymsa.report, from stored files alone)

Where the time goes: timing.csv (TIMING_COLUMNS), appended after each phase (a failed phase's
finished trials too, a resumed study's phases after the earlier ones): per trial the loop's parts
and its start-up (raymsa.search.tune.trial_timing), per phase its wall and slot-seconds (wall x
concurrent trial slots), and the study's own steps (ray_start, data, report from __main__; ceiling).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from raymsa.data import DataError
from raymsa.data.arrays import ArrayFolder, open_arrays, prepare_arrays
from raymsa.faults import check_free_space
from raymsa.metrics import METRIC_DIRECTION
from raymsa.search.space import SearchSpace
from raymsa.search.space import apply_params
from raymsa.search.tune import (DataHandle, Job, TrialResources, TuneRun, run_jobs, run_search, trial_timing,
                                write_csv_atomic, write_json_atomic)
from raymsa.study.config import StudyConfig


def config_id(params: dict[str, Any], knowledge: str = "unknown") -> str:
    """Short id of a searched configuration; the `known` arm is marked ('<id>+known'), since the same
    parameters with the masks given are another model."""
    base = "default" if not params else hashlib.sha1(
        json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return base if knowledge == "unknown" else f"{base}+{knowledge}"


TIMING_COLUMNS = ("phase", "trial", "part", "seconds")


def append_timing(out: Path, rows: list[dict[str, Any]]) -> None:
    """Add rows to <out>/timing.csv without a moment where the finished rows are not on disk
    (copy + rename, not an in-place append a kill could cut short)."""
    if not rows:
        return
    path = Path(out) / "timing.csv"
    old = path.read_text() if path.exists() else ""
    tmp = path.with_name(f".timing.csv.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        if old:
            f.write(old if old.endswith("\n") else old + "\n")
        w = csv.DictWriter(f, fieldnames=TIMING_COLUMNS, extrasaction="ignore")
        if not old:
            w.writeheader()
        for r in rows:
            w.writerow({**r, "seconds": round(float(r["seconds"]), 3)})
    os.replace(tmp, path)


def phase_timing(phase: str, tr: TuneRun, wall: float) -> list[dict[str, Any]]:
    """A Tune run's rows for timing.csv: each trial's parts, the phase's wall and slot-seconds."""
    rows = [{"phase": phase, **r} for r in trial_timing(tr.path, tr.run_token)]
    return rows + [{"phase": phase, "trial": "", "part": "wall", "seconds": wall},
                   {"phase": phase, "trial": "", "part": "slot_seconds", "seconds": wall * tr.max_concurrent}]


class StudyRunner:
    def __init__(self, study: StudyConfig, spaces: dict[str, SearchSpace], out: Path, *, resume: bool,
                 log=print):
        self.study, self.spaces, self.out, self.resume, self.log = study, spaces, out, resume, log
        res = study.resources
        self.trial_resources = TrialResources(res.workers_per_trial, res.cpus_per_worker, res.gpus_per_trial)
        self.data: DataHandle | None = None
        self.dataset = ""
        self.data_source = ""
        self.label_range: tuple[float, float] | None = None
        self.rounds: list[dict[str, Any]] = []
        self.run_seconds: list[float] = []  # per retrain round: wall seconds per run and slot

    # ---- layout ---------------------------------------------------------------------------------
    def search_dir(self, model: str, scenario: str) -> Path:
        return self.out / "search" / f"{model}__{scenario}"

    def run_dir(self, model: str, scenario: str, seed: int | str) -> Path:
        return self.out / "runs" / f"{model}__{scenario}__seed{seed}"

    @property
    def tune_dir(self) -> Path:
        return self.out / "tune"

    def max_concurrent(self) -> int:
        if self.study.resources.max_concurrent:
            return self.study.resources.max_concurrent
        cpus = ray.cluster_resources().get("CPU", 1)
        per_trial = self.study.resources.cpus_per_worker * self.study.resources.workers_per_trial
        return max(1, int(cpus // per_trial))

    # ---- phases ---------------------------------------------------------------------------------
    @staticmethod
    def arrays_root_for(out: Path) -> Path:
        # beside the study folders, on the same storage: a cluster's nodes all see it (EFS), and
        # every study of that storage reuses one conversion of a file
        return Path(out).parent / ".arrays"

    @property
    def arrays_root(self) -> Path:
        return self.arrays_root_for(self.out)

    @staticmethod
    def check_data(study: StudyConfig, arrays_root: Path, log=print) -> ArrayFolder:
        """Check the study's data before Ray starts and before anything of the study is written: a
        bad path or file is a DataError naming it (the safe unpickler and the schema check of
        load_mmsa run while the file is converted once to memory-mappable .npy, see
        raymsa.data.arrays; a file converted before is not read again)."""
        path = study.data.path
        if path is not None:
            if not str(path).strip():
                raise DataError("data.path: empty path; leave data.path out (null) for the embedded synthetic data")
            p = Path(path).expanduser()
            if not p.exists():
                raise DataError(f"{path}: no such file (data.path)")
            if p.is_dir():
                raise DataError(f"{path}: is a directory, not an MMSA pickle file (data.path)")
            if not p.is_file():
                raise DataError(f"{path}: not a regular file (data.path)")
            if p.stat().st_size == 0:
                raise DataError(f"{path}: empty file (data.path)")
        return prepare_arrays(study.data, arrays_root, log=log)

    def load_data(self, arrays: ArrayFolder | None = None) -> None:
        """Hand the trials the .npy folder of the data (converted by check_data, or here); the
        driver holds none of it, and each trial maps the rows it uses from the node's page cache."""
        t0 = time.perf_counter()
        if arrays is None:
            arrays = self.check_data(self.study, self.arrays_root, log=self.log)
        self.dataset = self.study.data.dataset or arrays.dataset
        self.data_source = arrays.source
        mapped = open_arrays(arrays.path)  # memory maps: reading the labels touches only their pages
        labels = np.concatenate([mapped[split].labels for split in ("train", "valid")])
        self.label_range = (float(labels.min()), float(labels.max()))
        del mapped
        self.data = DataHandle(folder=str(arrays.path))
        self.log(f"[raymsa] data: {arrays.source} ({self.dataset}, {arrays.nbytes / 2**20:.0f} MiB) ready in "
                 f"{time.perf_counter() - t0:.1f}s; trials memory-map {arrays.path}")

    def write_manifest(self) -> None:
        s = self.study
        now = dt.datetime.now().isoformat(timespec="seconds")
        created, resumed = now, []
        old = self.out / "study.json"
        if self.resume and old.exists():
            try:  # a resumed study keeps when it was created and adds when it was resumed
                prev = json.loads(old.read_text())
                created, resumed = prev.get("created", now), list(prev.get("resumed", [])) + [now]
            except (OSError, ValueError):
                pass
        rounds = [{"round": 0, "seeds": list(s.seeds.initial), "runs": self.all_pairs(), "why": "initial seeds"}]
        if self.resume and old.exists():
            try:
                rounds = json.loads(old.read_text()).get("rounds") or rounds
            except (OSError, ValueError):
                pass
        self.rounds = rounds
        self._stamps = (created, resumed)
        self._write_manifest()

    def all_pairs(self) -> list[str]:
        return [f"{m}__{sc.label}" for sc in self.study.scenarios for m in self.study.models]

    def _write_manifest(self) -> None:
        s, (created, resumed) = self.study, self._stamps
        used = sorted({seed for r in self.rounds for seed in r["seeds"]})
        write_json_atomic(self.out / "study.json", {
            "name": s.name, "dataset": self.dataset, "data_source": self.data_source,
            "models": list(s.models), "reference_model": s.reference_model, "seeds": used,
            "seed_plan": s.seeds.record(), "rounds": self.rounds,
            # labels -> registered models, tuned label -> its default arm (search.default_arm)
            "model_of": s.model_of, "default_arms": s.default_arms,
            "search_order": [sc.label for sc in s.search_order()],
            "smoke": s.name.endswith("-smoke"),
            "scenarios": [{"name": sc.label, "kind": sc.kind, "levels": list(sc.levels), "knowledge": sc.knowledge}
                          for sc in s.scenarios],
            "objective": {"metric": s.search.objective,
                          "mode": "max" if METRIC_DIRECTION[s.search.objective] else "min",
                          "summary": "mean over the validation grid"},
            "created": created, "resumed": resumed,
            "config": s.model_dump(mode="json"),
        })

    def repeat_dir(self, model: str, scenario: str, repeat: int) -> Path:
        """Repeat 0 is the search folder itself (the layout of a study without repeats)."""
        d = self.search_dir(model, scenario)
        return d if repeat == 0 else d / f"repeat{repeat}"

    def search(self, model: str, scenario, repeat: int = 0) -> dict[str, Any]:
        if model not in self.spaces:
            # no search: the model's defaults, and no search/ folder (the report's convention)
            return {"config_id": config_id({}, scenario.knowledge), "params": {}}
        best_path = self.repeat_dir(model, scenario.label, repeat) / "best.json"
        if best_path.exists():
            return json.loads(best_path.read_text())
        s = self.study
        mode = "max" if METRIC_DIRECTION[s.search.objective] else "min"
        suffix = "" if repeat == 0 else f"__r{repeat}"
        name = f"search__{model}__{scenario.label}{suffix}"
        self.log(f"[raymsa] search {model} under {scenario.label}"
                 + (f" (repeat {repeat + 1} of {s.search.repeats})" if s.search.repeats > 1 else "")
                 + f": {s.search.trials} trials, {s.train.epochs} epochs max"
                 + (" (successive halving)" if s.search.pruning else "")
                 + f", objective valid {s.search.objective} ({mode})")
        check_free_space(self.out, f"search of {model} under {scenario.label}")
        t0 = time.perf_counter()
        optuna_url = f"sqlite:///{(self.out / 'optuna.db').resolve()}" if s.search.optuna_storage else None
        slots = min(self.max_concurrent(), s.search.max_concurrent or math.inf)
        seed = s.search.sampler_seed(model, scenario.label, repeat)
        warm = self.warm_points(model, scenario.label, repeat)
        if warm:
            self.log(f"[raymsa]   warm start: the best configs of {', '.join(w['from'] for w in warm)} run first")
        tr = TuneRun(self.tune_dir, name, self.trial_resources, slots)
        try:
            found = run_search(
                self.spaces[model], s.base_train_config(model, scenario), self.data, tr,
                trials=s.search.trials, startup_trials=s.search.n_startup, epochs=s.train.epochs,
                grace_period=s.search.grace_period, reduction_factor=s.search.reduction_factor,
                seed=seed, mode=mode, optuna_storage=optuna_url,
                study_name=f"{s.name}__{model}__{scenario.label}{suffix}", resume=self.resume,
                sampler=s.search.sampler, pruning=s.search.pruning, multivariate=s.search.multivariate,
                constant_liar=s.search.constant_liar, warm_start=warm)
        finally:
            append_timing(self.out, phase_timing(name, tr, time.perf_counter() - t0))
        diverged = self.flag_diverged(found["trials"])
        best = {"model": model, "scenario": scenario.label, "config_id": config_id(found["params"], scenario.knowledge),
                "repeat": repeat, "search_seed": seed,
                "params": found["params"],
                "objective": {"metric": s.search.objective, "mode": mode, "value": found["value"]},
                "importances": found["importances"], "group_importances": found["group_importances"],
                "warm_start": warm, "n_trials": len(found["trials"]),
                "search_seconds": round(time.perf_counter() - t0, 1), "diverged_trials": diverged}
        write_csv_atomic(best_path.with_name("trials.csv"), found["trials"])
        write_json_atomic(best_path, best)
        self.log(f"[raymsa]   best valid {s.search.objective} {found['value']:.4f} with {found['params']} "
                 f"({best['search_seconds']}s)")
        return best

    def warm_points(self, model: str, scenario: str, repeat: int) -> list[dict[str, Any]]:
        """search.warm_start: the best config of each scenario searched before this one (search_order)
        for the same label and repeat, identical configs once. Only earlier scenarios count, so a
        resumed study starts each search from the same points as an uninterrupted one."""
        if not self.study.search.warm_start:
            return []
        out: list[dict[str, Any]] = []
        for sc in self.study.search_order():
            if sc.label == scenario:
                break
            path = self.repeat_dir(model, sc.label, repeat) / "best.json"
            if not path.exists():
                continue
            params = json.loads(path.read_text()).get("params") or {}
            if params and all(params != w["params"] for w in out):
                out.append({"from": sc.label, "params": params})
        return out

    def diverged(self, mae: float) -> bool:
        """A validation MAE beyond the width of the label range (6 on MOSI's -3..3) is worse than any
        constant inside the range: the model's predictions left the range, i.e. training diverged."""
        if self.label_range is None or not math.isfinite(mae):
            return False
        return mae > self.label_range[1] - self.label_range[0]

    def flag_diverged(self, rows: list[dict[str, Any]]) -> list[str]:
        """Mark each trial row `diverged` (MAE objectives only) and warn on the console."""
        if self.study.search.objective != "MAE":
            return []
        out = []
        for r in rows:
            r["diverged"] = self.diverged(float(r.get("objective", math.nan)))
            if r["diverged"]:
                out.append(str(r["trial_id"]))
        if out:
            lo, hi = self.label_range
            self.log(f"[raymsa]   warning: {len(out)} trial(s) diverged (valid MAE beyond the label range "
                     f"{lo:g}..{hi:g}): {', '.join(out)}; see trials.csv (column 'diverged')")
        return out

    def warn_diverged_runs(self, jobs: dict[str, Job]) -> None:
        """The console's warning for runs whose test MAE left the label range (the report flags them too)."""
        import pandas as pd

        bad = []
        for name, job in jobs.items():
            rows = pd.read_csv(job.final_eval["out_csv"])
            mae = rows[(rows["metric"] == "MAE") & (rows["split"] == "test")]["value"]
            if len(mae) and self.diverged(float(mae.max())):
                bad.append(f"{name} (test MAE up to {mae.max():.3g})")
        if bad:
            self.log(f"[raymsa]   warning: {len(bad)} run(s) diverged, their predictions left the label range: "
                     f"{', '.join(bad)}; the report flags them")

    def retrain_jobs(self, bests: dict[tuple[str, str], list[dict[str, Any]]], seeds: list[int] | None = None,
                     pairs: list[str] | None = None, first: int = 0) -> dict[str, Job]:
        """Every (model, scenario, seed) run of `seeds` (None = the initial seeds) and of `pairs`
        ('model__scenario'; None = all) whose eval.csv is not there yet. bests holds one best per
        search repeat; the study's j-th seed (counting from `first`) is retrained with repeat j mod repeats."""
        s = self.study
        seeds = list(s.seeds.initial) if seeds is None else seeds
        jobs = {}
        for scenario in s.scenarios:
            eval_scenarios = s.scenarios if s.cross_scenario else [scenario]
            for model in s.models:
                if pairs is not None and f"{model}__{scenario.label}" not in pairs:
                    continue
                for j, seed in enumerate(seeds, start=first):
                    repeats = bests[model, scenario.label]
                    best = repeats[j % len(repeats)]
                    out = self.run_dir(model, scenario.label, seed) / "eval.csv"
                    if out.exists():
                        continue
                    base = apply_params(s.base_train_config(model, scenario), {**best["params"], "train.seed": seed})
                    jobs[f"{model}__{scenario.label}__seed{seed}"] = Job(base, final_eval={
                        "scenarios": [sc.model_dump(mode="json", exclude_none=True) for sc in eval_scenarios],
                        "out_csv": str(out),
                        "meta": {"model": model, "scenario": scenario.label, "seed": seed,
                                 "config_id": best["config_id"]},
                    })
        return jobs

    def retrain(self, bests: dict[tuple[str, str], list[dict[str, Any]]], rnd: dict[str, Any] | None = None) -> None:
        """One round of retrains: round 0 is every (model, scenario) with the initial seeds."""
        rnd = rnd or self.rounds[0]
        first = sum(len(r["seeds"]) for r in self.rounds[:self.rounds.index(rnd)]) if rnd in self.rounds else 0
        jobs = self.retrain_jobs(bests, rnd["seeds"], rnd["runs"], first=first)
        if not jobs:
            return
        k = rnd["round"]
        what = ("best config of each model and scenario" if k == 0 else f"round {k}: {rnd['why']}")
        self.log(f"[raymsa] retrain: {len(jobs)} runs ({what}; seeds {rnd['seeds']}), each tested on "
                 f"{'every scenario' if self.study.cross_scenario else 'its scenario'}")
        check_free_space(self.out, "retrain")
        t0 = time.perf_counter()
        name = "retrain" if k == 0 else f"retrain__round{k}"
        tr = TuneRun(self.tune_dir, name, self.trial_resources, self.max_concurrent())
        try:
            run_jobs(jobs, self.data, tr, resume=self.resume)
        finally:
            append_timing(self.out, phase_timing(name, tr, time.perf_counter() - t0))
        missing = [name for name in jobs if not Path(jobs[name].final_eval["out_csv"]).exists()]
        if missing:
            raise RuntimeError(f"retrain: no results for {missing}")
        self.warn_diverged_runs(jobs)
        seconds = time.perf_counter() - t0
        self.run_seconds.append(seconds * min(len(jobs), self.max_concurrent()) / len(jobs))
        self.log(f"[raymsa]   retrain done in {seconds:.0f}s")

    # ---- adaptive seeds -------------------------------------------------------------------------
    def open_pairs(self) -> tuple[list[str], list[Any]]:
        """The (model, scenario) runs the next round must add seeds to: both sides of every headline
        comparison whose verdict is still open. Read from the stored results alone, as the report is."""
        from raymsa.report.load import load_study
        from raymsa.report.stats import Cube
        from raymsa.report.verdicts import headline_decisions

        res = load_study(self.out)
        decisions = headline_decisions(res, Cube(res))
        pairs: list[str] = []
        for d in decisions:
            if d.open:
                for m in (d.model, d.reference):
                    key = f"{m}__{d.scenario}"
                    if key not in pairs:
                        pairs.append(key)
        return pairs, decisions

    def seeds_of(self, pair: str) -> list[int]:
        return [seed for r in self.rounds if pair in r["runs"] for seed in r["seeds"]]

    def add_rounds(self, bests: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        """Rounds of `step` more seeds for the open comparisons, until none is open or every open
        one is at `max` seeds. A recorded round that did not finish (--resume) is finished first."""
        plan = self.study.seeds
        for rnd in self.rounds[1:]:
            self.retrain(bests, rnd)
        if not plan.adaptive:
            return
        while True:
            pairs, decisions = self.open_pairs()
            n_now = max((len(self.seeds_of(p)) for p in pairs), default=plan.max)
            if not pairs or n_now >= plan.max:
                closed = [d for d in decisions if not d.open]
                self.log(f"[raymsa] seeds: {len(closed)} of {len(decisions)} headline comparisons closed"
                         + (f"; {len(decisions) - len(closed)} open at the cap of {plan.max} seeds"
                            if pairs else "") + "; no further round")
                return
            used = sorted({seed for r in self.rounds for seed in r["seeds"]})
            seeds = plan.next_seeds(used, n_now)
            open_rows = [f"{d.model} vs {d.reference} under {d.scenario}" for d in decisions if d.open]
            rnd = {"round": len(self.rounds), "seeds": seeds, "runs": pairs,
                   "why": f"{len(open_rows)} headline comparison(s) still open: " + "; ".join(open_rows)}
            n_runs = len(pairs) * len(seeds)
            per_run = float(np.mean(self.run_seconds)) if self.run_seconds else math.nan
            cost = (f", about {n_runs * per_run / 60:.1f} min at {per_run:.0f} s per run so far"
                    if math.isfinite(per_run) else "")
            self.log(f"[raymsa] seeds round {rnd['round']}: {n_runs} runs ({len(pairs)} model x scenario "
                     f"x seeds {seeds}){cost}; {rnd['why']}")
            self.rounds.append(rnd)
            self._write_manifest()  # before the round runs: --resume continues it
            self.retrain(bests, rnd)
            self.write_ceiling()

    def write_ceiling(self) -> None:
        """<study>/ceiling.csv: the Bayes-optimal test metrics per scenario, level and seed, when the
        study runs on the embedded synthetic data (raymsa.data.ceiling); real data has no ceiling.
        Called again after each seed round: only the seeds not yet in the file are computed."""
        s, path = self.study, self.out / "ceiling.csv"
        if s.data.path is not None:
            return
        import csv

        from raymsa.data.ceiling import ceiling_rows, synthetic_test_split, write_rows

        used = sorted({seed for r in self.rounds for seed in r["seeds"]} or set(s.seeds.initial))
        old = []
        if path.exists():
            with open(path, newline="") as f:  # as strings: the rows are written back unchanged
                old = list(csv.DictReader(f))
        have = {int(r["seed"]) for r in old}
        todo = [seed for seed in used if seed not in have]
        if not todo:
            return
        t0 = time.perf_counter()
        gen = synthetic_test_split(s.data.like, s.data.synth_seed, max_eval=s.data.max_eval,
                                   test_size=s.data.synth_test_size)
        rows = []
        for scenario in s.scenarios:
            if scenario.kind == "noise":  # the ceiling assumes a noise-free marker column
                self.log(f"[raymsa] ceiling: none for {scenario.label} (noise kind)")
                continue
            for seed in todo:  # each seed's runs are tested under their own masks
                mask_seed = s.train.eval_mask_seed if s.train.eval_mask_seed is not None else seed
                rows += [{**r, "seed": seed} for r in ceiling_rows(gen, scenario, mask_seed)]
        write_rows(old + rows, path)
        append_timing(self.out, [{"phase": "study", "trial": "", "part": "ceiling", "seconds": time.perf_counter() - t0}])
        self.log(f"[raymsa] ceiling: Bayes-optimal test metrics for seeds {todo} -> {path} "
                 f"({time.perf_counter() - t0:.0f}s)")

    def run(self) -> None:
        if self.data is None:
            self.load_data()
        self.write_manifest()
        self.write_ceiling()
        k = self.study.search.repeats
        # search_order: with warm start the scenario whose best configs are most informative first
        bests = {(model, scenario.label): [self.search(model, scenario, r) for r in range(k if model in self.spaces else 1)]
                 for scenario in self.study.search_order() for model in self.study.models}
        self.retrain(bests)
        self.add_rounds(bests)

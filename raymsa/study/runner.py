"""The phases of a study, each writing its results atomically so that `--resume` redoes nothing
that finished and a failure never destroys finished results:

    1. search, for each scenario and model
                -> search/<model>__<scenario>/best.json, trials.csv   (Optuna in Tune, validation only)
    2. retrain, all (model, scenario, seed) runs in one Tune run
                -> runs/<model>__<scenario>__seed<S>/eval.csv         (best config retrained per seed, tested
                                                                       on its grid and every other scenario)
    3. report   -> report/                                            (raymsa.report, from stored files alone)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
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
from raymsa.search.tune import (DataHandle, Job, TrialResources, TuneRun, run_jobs, run_search, write_csv_atomic,
                                write_json_atomic)
from raymsa.study.config import StudyConfig


def config_id(params: dict[str, Any], knowledge: str = "unknown") -> str:
    """Short id of a searched configuration; the `known` arm is marked ('<id>+known'), since the same
    parameters with the masks given are another model."""
    base = "default" if not params else hashlib.sha1(
        json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return base if knowledge == "unknown" else f"{base}+{knowledge}"


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
        write_json_atomic(self.out / "study.json", {
            "name": s.name, "dataset": self.dataset, "data_source": self.data_source,
            "models": list(s.models), "reference_model": s.reference_model, "seeds": s.seeds,
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
        found = run_search(
            self.spaces[model], s.base_train_config(model, scenario), self.data,
            TuneRun(self.tune_dir, name, self.trial_resources, slots),
            trials=s.search.trials, startup_trials=s.search.n_startup, epochs=s.train.epochs,
            grace_period=s.search.grace_period, reduction_factor=s.search.reduction_factor,
            seed=seed, mode=mode, optuna_storage=optuna_url,
            study_name=f"{s.name}__{model}__{scenario.label}{suffix}", resume=self.resume,
            sampler=s.search.sampler, pruning=s.search.pruning, multivariate=s.search.multivariate,
            constant_liar=s.search.constant_liar, warm_start=warm)
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

    def retrain_jobs(self, bests: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Job]:
        """Every (model, scenario, seed) run whose eval.csv is not there yet. bests holds one best per
        search repeat; seed j of the study's seeds is retrained with repeat j mod repeats."""
        s = self.study
        jobs = {}
        for scenario in s.scenarios:
            eval_scenarios = s.scenarios if s.cross_scenario else [scenario]
            for model in s.models:
                for j, seed in enumerate(s.seeds):
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

    def retrain(self, bests: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        jobs = self.retrain_jobs(bests)
        if not jobs:
            return
        self.log(f"[raymsa] retrain: {len(jobs)} runs (best config of each model and scenario x seeds "
                 f"{self.study.seeds}), each tested on {'every scenario' if self.study.cross_scenario else 'its scenario'}")
        check_free_space(self.out, "retrain")
        t0 = time.perf_counter()
        run_jobs(jobs, self.data, TuneRun(self.tune_dir, "retrain", self.trial_resources, self.max_concurrent()),
                 resume=self.resume)
        missing = [name for name in jobs if not Path(jobs[name].final_eval["out_csv"]).exists()]
        if missing:
            raise RuntimeError(f"retrain: no results for {missing}")
        self.warn_diverged_runs(jobs)
        self.log(f"[raymsa]   retrain done in {time.perf_counter() - t0:.0f}s")

    def write_ceiling(self) -> None:
        """<study>/ceiling.csv: the Bayes-optimal test metrics per scenario, level and seed, when the
        study runs on the embedded synthetic data (raymsa.data.ceiling); real data has no ceiling."""
        s, path = self.study, self.out / "ceiling.csv"
        if s.data.path is not None or path.exists():
            return
        from raymsa.data.ceiling import ceiling_rows, synthetic_test_split, write_rows

        t0 = time.perf_counter()
        gen = synthetic_test_split(s.data.like, s.data.synth_seed, max_eval=s.data.max_eval)
        rows = []
        for scenario in s.scenarios:
            if scenario.kind == "noise":  # the ceiling assumes a noise-free marker column
                self.log(f"[raymsa] ceiling: none for {scenario.label} (noise kind)")
                continue
            for seed in s.seeds:  # each seed's runs are tested under their own masks
                mask_seed = s.train.eval_mask_seed if s.train.eval_mask_seed is not None else seed
                rows += [{**r, "seed": seed} for r in ceiling_rows(gen, scenario, mask_seed)]
        write_rows(rows, path)
        self.log(f"[raymsa] ceiling: Bayes-optimal test metrics -> {path} ({time.perf_counter() - t0:.0f}s)")

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

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

import ray

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
    def load_data(self) -> None:
        t0 = time.perf_counter()
        data = self.study.data.load()
        self.dataset = self.study.data.dataset or data.dataset
        self.data_source = data.source
        # one copy in the object store; trials on a node all map it (see DataHandle)
        self.data = DataHandle(ray.put(data))
        self.log(f"[raymsa] data: {data.source} ({self.dataset}, {data.nbytes / 2**20:.0f} MiB) "
                 f"loaded in {time.perf_counter() - t0:.1f}s and shared through the object store")

    def write_manifest(self) -> None:
        s = self.study
        write_json_atomic(self.out / "study.json", {
            "name": s.name, "dataset": self.dataset, "data_source": self.data_source,
            "models": list(s.models), "reference_model": s.reference_model, "seeds": s.seeds,
            "smoke": s.name.endswith("-smoke"),
            "scenarios": [{"name": sc.label, "kind": sc.kind, "levels": list(sc.levels), "knowledge": sc.knowledge}
                          for sc in s.scenarios],
            "objective": {"metric": s.search.objective,
                          "mode": "max" if METRIC_DIRECTION[s.search.objective] else "min",
                          "summary": "mean over the validation grid"},
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "config": s.model_dump(mode="json"),
        })

    def search(self, model: str, scenario) -> dict[str, Any]:
        if model not in self.spaces:
            # no search: the model's defaults, and no search/ folder (the report's convention)
            return {"config_id": config_id({}, scenario.knowledge), "params": {}}
        best_path = self.search_dir(model, scenario.label) / "best.json"
        if best_path.exists():
            return json.loads(best_path.read_text())
        s = self.study
        mode = "max" if METRIC_DIRECTION[s.search.objective] else "min"
        name = f"search__{model}__{scenario.label}"
        self.log(f"[raymsa] search {model} under {scenario.label}: {s.search.trials} trials, "
                 f"{s.train.epochs} epochs max (ASHA), objective valid {s.search.objective} ({mode})")
        t0 = time.perf_counter()
        optuna_url = f"sqlite:///{(self.out / 'optuna.db').resolve()}" if s.search.optuna_storage else None
        slots = min(self.max_concurrent(), s.search.max_concurrent or math.inf)
        found = run_search(
            self.spaces[model], s.base_train_config(model, scenario), self.data,
            TuneRun(self.tune_dir, name, self.trial_resources, slots),
            trials=s.search.trials, startup_trials=s.search.startup_trials, epochs=s.train.epochs,
            grace_period=s.search.grace_period, reduction_factor=s.search.reduction_factor,
            seed=s.search.seed, mode=mode, optuna_storage=optuna_url,
            study_name=f"{s.name}__{model}__{scenario.label}", resume=self.resume)
        best = {"model": model, "scenario": scenario.label, "config_id": config_id(found["params"], scenario.knowledge),
                "params": found["params"],
                "objective": {"metric": s.search.objective, "mode": mode, "value": found["value"]},
                "importances": found["importances"], "n_trials": len(found["trials"]),
                "search_seconds": round(time.perf_counter() - t0, 1)}
        write_csv_atomic(self.search_dir(model, scenario.label) / "trials.csv", found["trials"])
        write_json_atomic(best_path, best)
        self.log(f"[raymsa]   best valid {s.search.objective} {found['value']:.4f} with {found['params']} "
                 f"({best['search_seconds']}s)")
        return best

    def retrain_jobs(self, bests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Job]:
        """Every (model, scenario, seed) run whose eval.csv is not there yet."""
        s = self.study
        jobs = {}
        for scenario in s.scenarios:
            eval_scenarios = s.scenarios if s.cross_scenario else [scenario]
            for model in s.models:
                best = bests[model, scenario.label]
                for seed in s.seeds:
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

    def retrain(self, bests: dict[tuple[str, str], dict[str, Any]]) -> None:
        jobs = self.retrain_jobs(bests)
        if not jobs:
            return
        self.log(f"[raymsa] retrain: {len(jobs)} runs (best config of each model and scenario x seeds "
                 f"{self.study.seeds}), each tested on {'every scenario' if self.study.cross_scenario else 'its scenario'}")
        t0 = time.perf_counter()
        run_jobs(jobs, self.data, TuneRun(self.tune_dir, "retrain", self.trial_resources, self.max_concurrent()),
                 resume=self.resume)
        missing = [name for name in jobs if not Path(jobs[name].final_eval["out_csv"]).exists()]
        if missing:
            raise RuntimeError(f"retrain: no results for {missing}")
        self.log(f"[raymsa]   retrain done in {time.perf_counter() - t0:.0f}s")

    def run(self) -> None:
        self.load_data()
        self.write_manifest()
        bests = {(model, scenario.label): self.search(model, scenario)
                 for scenario in self.study.scenarios for model in self.study.models}
        self.retrain(bests)

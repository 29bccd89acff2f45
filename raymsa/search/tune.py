"""Ray Tune runs of the training loop: the Optuna search of one (model, scenario), and the retrain of
its best config with every seed.

A trial with one worker runs the loop directly in the trial process (about a second to start);
a trial with several workers is a small driver that runs the loop under Ray Train's TorchTrainer
and relays its reports to Tune (the Train-inside-Tune pattern of Ray 2.60).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune

from raymsa.search.space import SearchSpace, apply_params, group_importances, param_importances
from raymsa.train.session import TuneSession

# Trials with several Train workers hold this custom resource, not a CPU, for their driver:
# a CPU-less driver cannot ask for {"CPU": 0}, and a fractional CPU would block trials that fill
# a node with workers. Every node that may host a driver declares it (ray.init / cluster.yaml).
DRIVER_RESOURCE = "raymsa_driver"
METRIC = "best_objective"
FATAL = "fatal"  # a trial's last report carries this key when it failed in a way no retry can fix


@dataclass(frozen=True)
class DataHandle:
    """Carries the dataset into trials so that every trial (and every Train worker) maps the one
    copy on its node instead of receiving a private one.

    The study's handle names a folder of .npy files (raymsa.data.arrays) that each trial
    memory-maps: the node's page cache holds the one copy, the driver holds none, and a trial reads
    only the rows it uses. A handle made from an object-store ref (tests, benchmarks, data built in
    memory) maps the node's copy in the store instead."""

    ref: ray.ObjectRef | None = None
    folder: str | None = None

    def get(self):
        if self.folder is not None:
            from raymsa.data.arrays import open_arrays

            return open_arrays(self.folder)
        return ray.get(self.ref)

    @property
    def store_bytes(self) -> int:
        """What this handle keeps in Ray's object store (a folder handle: nothing)."""
        if self.folder is not None or self.ref is None:
            return 0
        return int(ray.get(self.ref).nbytes)


@dataclass(frozen=True)
class Job:
    """One training run a trial may be asked for."""

    base: dict[str, Any]  # raw training config (search parameters are applied on top)
    final_eval: dict[str, Any] | None = None  # {"scenarios": [...], "out_csv": path, "meta": {...}}


@dataclass(frozen=True)
class TrialSpec:
    """What the trials of one Tune run train: a search's trials all run job 'search' with their
    sampled parameters; a retrain's trials each run the job named by their 'job' parameter."""

    jobs: dict[str, Job]
    verbose: bool = False


@dataclass(frozen=True)
class TrialResources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_trial: float = 0.0

    def for_tune(self):
        if self.workers == 1:
            res = {"CPU": self.cpus_per_worker}
            if self.gpus_per_trial:
                res["GPU"] = self.gpus_per_trial  # fractional: small trials share a GPU
            return res
        return {DRIVER_RESOURCE: 1}


class _TrialSession(TuneSession):
    """TuneSession that also reports the id of the Ray node running the trial: result.json then shows
    where each epoch ran, also across a retry on another node (node_ip does not tell apart nodes
    that share a machine)."""

    def __init__(self):
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        super().report({**metrics, "node_id": self.node_id}, checkpoint_dir)


def _quiet_exit_unraisable(unraisable, _default=sys.__unraisablehook__) -> None:
    # Ray's worker turns the SIGTERM that ends a stopped trial's actor into SystemExit(1); when it
    # lands inside a weakref callback Python prints "Exception ignored in: <function WeakSet...>
    # ... SystemExit: 1" for every trial ASHA stops. That is an ordinary exit, not an error.
    if isinstance(unraisable.exc_value, SystemExit):
        return
    _default(unraisable)


def _trial(config: dict[str, Any], spec: TrialSpec, data: DataHandle, storage: str, run: str = "") -> None:
    import logging

    sys.unraisablehook = _quiet_exit_unraisable
    # With reuse_actors Tune gives the next trial this actor only if the previous trial's thread ends
    # within TUNE_FUNCTION_THREAD_TIMEOUT_S (read here, in the actor, at each reset; default 2 s),
    # else the next trial fails with no retry: leave a stopped trial's thread time on a busy machine
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
    # one 'checkpoint created' INFO line per epoch per trial would drown the study's own lines
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    t0, timing = time.perf_counter(), {}
    # read now: once the scheduler has stopped the trial its session is gone, and the context then
    # answers None (every stopped trial's record would land in one None.json)
    trial_id = tune.get_context().get_trial_id()
    try:
        _train(config, spec, data, storage, timing)
    except Exception as e:
        from raymsa.faults import fatal_cause

        cause = fatal_cause(e, Path(storage).parent)
        if cause is None:
            raise  # Tune retries it from its last checkpoint (a lost node, a killed worker)
        # Tune retries every trial error up to max_failures times and has no way to mark one as
        # final: report it instead, and FatalStopper ends the whole run (run_search/run_jobs raise)
        tune.report({METRIC: math.nan, FATAL: cause})
    finally:  # also for a trial the scheduler stopped: what it spent counts
        _write_timing(Path(storage), run, trial_id, time.perf_counter() - t0, timing)


# under a Tune experiment's folder: one JSON per trial, {"run": token, "wall": s, "parts": {part: s}}.
# The token names the Tune run that started the trial: a trial of a killed driver can outlive it and
# write its record after --resume has set that run aside and started a new one under the same name.
TIMING_DIR = ".timing"


def _write_timing(experiment: Path, run: str, trial_id: str | None, wall: float, parts: dict[str, float]) -> None:
    if trial_id is None:
        return
    try:
        d = experiment / TIMING_DIR
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{trial_id}.tmp"
        tmp.write_text(json.dumps({"run": run, "wall": wall, "parts": parts}))
        os.replace(tmp, d / f"{trial_id}.json")
    except Exception:  # noqa: BLE001 - a cost record never fails a trial
        pass


def trial_timing(experiment: Path, run: str | None = None) -> list[dict[str, Any]]:
    """Rows (trial, part, seconds) of a Tune experiment's trials: the loop's parts, and trial start-up =
    the trial's wall minus them (actor reuse, imports, data mapping, model and optimiser set-up).
    A trial that starts again (a retry) keeps its last record; with `run`, only that Tune run's trials."""
    rows = []
    for f in sorted((experiment / TIMING_DIR).glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if run is not None and rec.get("run") != run:
            continue
        parts = {k: float(v) for k, v in rec.get("parts", {}).items()}
        rows.append({"trial": f.stem, "part": "trial_startup", "seconds": max(0.0, rec["wall"] - sum(parts.values()))})
        rows += [{"trial": f.stem, "part": k, "seconds": v} for k, v in parts.items()]
    return rows


def _train(config: dict[str, Any], spec: TrialSpec, data: DataHandle, storage: str,
           timing: dict[str, float] | None = None) -> None:
    from raymsa.missing import ScenarioConfig
    from raymsa.train.config import parse_train_config
    from raymsa.train.loop import FinalEval, run

    params = dict(config)
    job = spec.jobs[params.pop("job", "search")]
    cfg = parse_train_config(apply_params(job.base, params), "trial config")
    fe = None
    if job.final_eval is not None:
        fe = FinalEval([ScenarioConfig.model_validate(s) for s in job.final_eval["scenarios"]],
                       Path(job.final_eval["out_csv"]), dict(job.final_eval["meta"]))
    if cfg.resources.workers == 1:
        run(cfg, data.get(), _TrialSession(), final_eval=fe, verbose=spec.verbose, timing=timing)
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        from raymsa.train.distributed import fit_distributed

        # The Train run (checkpoints, result.json) goes under the Tune experiment, on storage every
        # node sees: the trial's own folder (get_trial_dir) is local to the node of this driver,
        # while rank 0 runs on another node and writes there
        fit_distributed(cfg, data if data.folder is not None else data.ref, storage_path=Path(storage) / "train",
                        name=tune.get_context().get_trial_id(), final_eval=fe,
                        callbacks=[TuneReportCallback()], verbose=spec.verbose)


class TrialLines(tune.Callback):
    """One terminal line per ended trial instead of Tune's per-epoch tables, and a progress line
    (done / total, elapsed, time left estimated from the finished trials). It also records how each
    trial ended, which Tune's results do not say: `ended[trial_id]` is 'completed' (its function
    returned), 'stopped' (the scheduler stopped it), 'error' or 'fatal'."""

    def __init__(self, name: str, params: list[str], total: int | None = None, epochs: int | None = None):
        self.name, self.params, self.total, self.epochs = name, params, total, epochs
        self.ended: dict[str, str] = {}
        self.t0 = time.perf_counter()

    def _params(self, trial) -> str:
        return ", ".join(f"{k.split('.')[-1]}={trial.config[k]:.3g}" if isinstance(trial.config.get(k), float)
                         else f"{k.split('.')[-1]}={trial.config.get(k)}" for k in self.params)

    def on_trial_complete(self, iteration, trials, trial, **info):
        r = trial.last_result or {}
        if r.get(FATAL):
            self.ended[trial.trial_id] = "fatal"
            print(f"[raymsa]   {self.name} {trial.trial_id}: FAILED, not retried: {r[FATAL]}", flush=True)
        elif not r:
            self.ended[trial.trial_id] = "stopped"  # never started: the run was stopped
            return
        else:
            # Tune marks the last result `done` whether the function returned or ASHA stopped it
            epoch = r.get("epoch", 0)
            stopped = self.epochs is not None and epoch < self.epochs
            self.ended[trial.trial_id] = "stopped" if stopped else "completed"
            how = f"stopped after {epoch} of {self.epochs} epochs" if stopped else f"after {epoch} epoch(s)"
            print(f"[raymsa]   {self.name} {trial.trial_id}: valid {r.get(METRIC, math.nan):.4f} {how} "
                  f"({self._params(trial)})", flush=True)
        self._progress(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = "error"
        # the study's storage, not Ray's session folder (error_file points there)
        where = Path(trial.path) / "error.txt" if trial.path else "see Tune logs"
        print(f"[raymsa]   {self.name} {trial.trial_id}: FAILED ({where})", flush=True)
        self._progress(trials)

    def _progress(self, trials) -> None:
        if not self.total:
            return
        done = len(self.ended)
        elapsed = time.perf_counter() - self.t0
        left = ""
        if 0 < done < self.total:
            # wall time per finished trial so far (slots included), over the trials still to go
            left = f", about {_clock(elapsed / done * (self.total - done))} left"
        print(f"[raymsa]   {self.name}: {done}/{self.total} trials done, {_clock(elapsed)} elapsed{left}",
                 flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class FatalStopper(tune.Stopper):
    """Ends the whole Tune run as soon as a trial reports a failure no retry can fix."""

    def __init__(self):
        self.causes: list[str] = []

    def __call__(self, trial_id, result):
        if result.get(FATAL):
            self.causes.append(str(result[FATAL]))
            return True
        return False

    def stop_all(self):
        return bool(self.causes)


@dataclass
class TuneRun:
    storage: Path  # where Tune keeps its experiments (TensorBoard files live under here)
    name: str
    resources: TrialResources
    max_concurrent: int
    max_failures: int = 2
    # set by tuner(): how each trial ended, and the failures that stopped the run
    lines: TrialLines | None = field(default=None, init=False)
    stopper: FatalStopper | None = field(default=None, init=False)
    run_token: str | None = field(default=None, init=False)

    @property
    def path(self) -> Path:
        return self.storage / self.name

    @property
    def reuse_actors(self) -> bool:
        # A multi-worker trial's driver thread must tear down its TorchTrainer before Tune can reuse
        # its actor, which takes longer than Tune waits: the next trial then failed ("Trainable runner
        # reuse requires reset_config() to be implemented and return True"). Their start-up is the
        # TorchTrainer's anyway (15-20 s), so only one-worker trials reuse actors.
        return self.resources.workers == 1

    def tuner(self, spec: TrialSpec, data: DataHandle, *, param_space: dict[str, Any] | None = None,
              tune_config: tune.TuneConfig, resume: bool, shown: list[str] = (), total: int | None = None,
              epochs: int | None = None) -> tune.Tuner:
        self.run_token = uuid.uuid4().hex
        trainable = tune.with_resources(tune.with_parameters(_trial, spec=spec, data=data, storage=str(self.path),
                                                             run=self.run_token),
                                        self.resources.for_tune())
        if resume and self.path.exists():
            # An interrupted Tune run is not restored: Tune's restore of a search algorithm's state
            # lost suggested trials here. What finished is kept by the study at a coarser grain
            # (best.json, eval.csv); the interrupted run is set aside, never deleted.
            k = 1
            while self.path.with_name(f"{self.name}.interrupted-{k}").exists():
                k += 1
            self.path.rename(self.path.with_name(f"{self.name}.interrupted-{k}"))
        self.lines = TrialLines(self.name.split("__")[0], list(shown), total, epochs)
        self.stopper = FatalStopper()
        return tune.Tuner(
            trainable, param_space=param_space or {}, tune_config=tune_config,
            run_config=tune.RunConfig(
                name=self.name, storage_path=str(self.storage),
                failure_config=tune.FailureConfig(max_failures=self.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1), stop=self.stopper,
                verbose=0, callbacks=[self.lines],
            ),
        )

    def raise_if_fatal(self) -> None:
        if self.stopper is not None and self.stopper.causes:
            from raymsa.faults import FatalError

            raise FatalError(f"{self.name}: {self.stopper.causes[0]} (not retried; Tune run in {self.path})")


def _not_yet_queued(points: list[dict[str, Any]], storage, study_name: str) -> list[dict[str, Any]]:
    """The warm-start points not already waiting in a resumed Optuna study. OptunaSearch enqueues
    its points_to_evaluate on every start, and a study killed after enqueuing but before running
    them still holds them as WAITING trials, which Optuna hands out first: enqueued again, each
    would run twice. (Optuna's skip_if_exists would also skip points the killed run finished, whose
    results went with the set-aside Tune run.)"""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # a new study
        return points
    waiting = [t.system_attrs.get("fixed_params") for t in
               study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))]
    return [p for p in points if p not in waiting]


def run_search(space: SearchSpace, base: dict[str, Any], data: DataHandle, tr: TuneRun, *, trials: int,
               startup_trials: int, epochs: int, grace_period: int, reduction_factor: float, seed: int,
               mode: str, optuna_storage: str | None = None, study_name: str | None = None,
               resume: bool = False, sampler: str = "tpe", pruning: bool = True, multivariate: bool = True,
               constant_liar: bool = True, warm_start: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Optuna (TPE, or random) inside Tune with successive halving on epochs. Returns the best trial
    and every trial.

    Reproducible at any concurrency: the sampler suggests `tr.max_concurrent` trials at a time, the
    next batch only once the whole batch has finished (ConcurrencyLimiter(batch=True)), so each
    suggestion rests on the same finished trials whatever the timing; and BatchedHalving compares a
    trial at a rung only with trials of earlier batches (raymsa/search/halving.py).

    warm_start: [{"from": label, "params": {...}}, ...], configs Optuna runs first (OptunaSearch's
    points_to_evaluate, i.e. Optuna's enqueue_trial); their trials are marked in the rows
    (`warm_start` = the label they came from) and TPE models them like any finished trial."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from raymsa.search.halving import BatchedHalving

    storage = None
    if optuna_storage:
        storage = optuna.storages.RDBStorage(optuna_storage)
    if sampler == "tpe":
        # TPE's default of 10 random start-up trials would make a small search purely random
        import warnings

        with warnings.catch_warnings():
            # multivariate, group and constant_liar are marked experimental by Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # multivariate/group: a joint model of the parameters (Falkner et al. 2018) learns from few
            # trials what independent 1-d models cannot; constant_liar: a trial suggested while its
            # batch siblings run treats them as bad results, so one batch does not repeat one point
            # (deterministic under batching: the siblings running are always the same ones)
            ot_sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup_trials, multivariate=multivariate, group=multivariate,
                constant_liar=constant_liar)
    elif sampler == "random":
        ot_sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        raise ValueError(f"sampler must be 'tpe' or 'random', got {sampler!r}")
    warm = [{k: w["params"][k] for k in space.params} for w in warm_start
            if all(k in w["params"] for k in space.params)]
    if warm and storage is not None and study_name is not None:
        warm = _not_yet_queued(warm, storage, study_name)
    searcher = ConcurrencyLimiter(OptunaSearch(
        space=space.optuna_space(), metric=METRIC, mode=mode, sampler=ot_sampler,
        storage=storage, study_name=study_name, points_to_evaluate=warm or None,
    ), max_concurrent=tr.max_concurrent, batch=True)
    scheduler = None
    if pruning:
        scheduler = BatchedHalving(metric=METRIC, mode=mode, max_t=epochs, grace_period=min(grace_period, epochs),
                                   reduction_factor=reduction_factor, batch_size=tr.max_concurrent)
    tuner = tr.tuner(TrialSpec({"search": Job(base)}), data, tune_config=tune.TuneConfig(
        search_alg=searcher, scheduler=scheduler, num_samples=trials, reuse_actors=tr.reuse_actors),
        resume=resume, shown=list(space.params), total=trials, epochs=epochs)
    grid = tuner.fit()
    tr.raise_if_fatal()

    rows, done, abnormal = [], [], []
    for r in grid:
        params = {k: r.config.get(k) for k in space.params}
        metrics = r.metrics or {}
        value = metrics.get(METRIC, math.nan)
        value = math.nan if value is None else float(value)
        trial_id = metrics.get("trial_id", Path(r.path).name)
        n_epochs = metrics.get("epoch", 0) or 0
        ended = tr.lines.ended.get(trial_id) if tr.lines else None
        # DONE only for a trial that ended normally (its function returned, or the scheduler stopped
        # it) after at least one epoch; anything else (an interrupted run's trials) is no result
        if r.error:
            status = "ERROR"
        elif ended in ("completed", "stopped") and n_epochs >= 1 and not math.isnan(value):
            status = "DONE"
        else:
            status = "INCOMPLETE"
        came_from = next((w["from"] for w in warm_start
                          if all(w["params"].get(k) == params[k] for k in space.params)), "")
        rows.append({"trial": _creation_index(r.path), "trial_id": trial_id, "status": status,
                     "objective": value, "epochs": n_epochs, "warm_start": came_from,
                     **{f"config/{k}": v for k, v in params.items()}})
        if status == "DONE":
            done.append((params, value))
        else:
            abnormal.append(f"{trial_id} {status}")
    if len(rows) < trials:
        abnormal.append(f"{trials - len(rows)} never started")
    if abnormal:
        errors = [(str(r.error).strip().splitlines() or [type(r.error).__name__])[-1] for r in grid if r.error][:3]
        raise RuntimeError(f"search {tr.name}: not every trial ended normally ({', '.join(abnormal)})"
                           f"{'; first errors: ' + str(errors) if errors else ''}; no best config written "
                           f"(Tune run in {tr.path})")
    rows.sort(key=lambda r: (r["trial"], str(r["trial_id"])))  # the order the sampler suggested them
    best_params, best_value = (min if mode == "min" else max)(done, key=lambda pv: pv[1])
    importances = param_importances(space, done, "minimize" if mode == "min" else "maximize", seed)
    return {
        "params": best_params, "value": best_value, "trials": rows, "importances": importances,
        "group_importances": group_importances(space, importances),
    }


def _creation_index(path: str) -> int:
    """Tune's running number of a trial, from its folder name '_trial_<id>_<n>_<params>_<date>'
    (trial ids are random; n counts trials in the order they were created, i.e. suggested)."""
    m = re.match(r"^_?[^_]*_[0-9a-f]+_(\d+)", Path(path).name)
    return int(m.group(1)) if m else -1


def run_jobs(jobs: dict[str, Job], data: DataHandle, tr: TuneRun, *, resume: bool = False) -> None:
    """Run every job once (a grid of trials, as many at a time as the slots allow); each job's
    final evaluation writes its own file."""
    tuner = tr.tuner(TrialSpec(jobs), data, param_space={"job": tune.grid_search(sorted(jobs))},
                     tune_config=tune.TuneConfig(max_concurrent_trials=tr.max_concurrent, reuse_actors=tr.reuse_actors),
                     resume=resume, shown=["job"], total=len(jobs))
    grid = tuner.fit()
    tr.raise_if_fatal()
    errors = [r.error for r in grid if r.error]
    if errors:
        last = (str(errors[0]).strip().splitlines() or [type(errors[0]).__name__])[-1]
        raise RuntimeError(f"{tr.name}: {len(errors)} of {len(jobs)} runs failed: {last} (Tune run in {tr.path})")


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def write_csv_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)

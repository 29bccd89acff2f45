"""Data memory multiplier: how many copies of the dataset a node holds while several trials train on it.

    python benchmarks/bench_data_memory.py [--out bench_data_memory.json] [--trials 4]
                                           [--like mosei] [--scale 0.135] [--epochs 1]

The study puts its dataset in Ray's object store once; trials get a DataHandle and `ray.get` it,
which maps the node's copy as read-only numpy views, and SplitTensors wraps those with
torch.from_numpy. So N concurrent trials should cost one copy of the data, not N.

Measured on the real path: `run_jobs` (the study's retrain phase: Tune, with_parameters, actor
reuse) -> `_trial` -> DataHandle.get -> the training loop (tiny FSRF, one epoch over every training
sample, then validation), with `--trials` trials at once. Each trial stops inside its last report
(the loop still holds the data and its SplitTensors) until the node's memory has been read. Three
Ray sessions, one after the other:

    tiny      the same trials over a tiny dataset (the baseline: Ray, torch, the model, the trials;
              just enough samples to fill the same training and evaluation batches, and as many
              epochs over them as give the same number of training steps as the big runs)
    mapped    over a MOSEI-like dataset of >= 1 GiB (raymsa.data.synth), as the study runs: written as
              .npy files (raymsa.data.arrays) that every trial memory-maps (DataHandle(folder=...))
    shared    the same data put in Ray's object store (DataHandle(ref)), the study's earlier path
    private   the same, but each trial deep-copies what ray.get gives it (what a private copy per
              trial costs: a .copy(), a dtype cast, loading the file per trial)

memory = summed PSS (/proc/<pid>/smaps_rollup) over this process and every process below it (the
Ray services, the raylet, the trial workers), read twice per variant: as is, and after every trial
returned its freed heap to the OS (malloc_trim). Shared pages (the object store's) are divided
among the processes that map them, so they count once; summed RSS would count them once per trial.
The 'as is' reading also holds what glibc keeps of the training steps' freed batches: a few hundred
MiB per trial, levelling off as the data grow (see docs/cluster.md). The system-wide MemTotal -
MemAvailable is printed too, but anything else running on the machine moves it.

    multiplier = (memory[variant] - memory[tiny]) / (dataset bytes - tiny dataset bytes)

Goal: shared <= 1.3 (one copy). Private copies give >= trials + 1. Measured on a 2-core machine,
4 trials, 1.07 GiB: see docs/cluster.md. Takes 3-5 min and ~8 GiB of free memory.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# runnable from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402

import raymsa.search.tune as tune_mod  # noqa: E402
from raymsa.data import MMSAData  # noqa: E402
from raymsa.data.synth import split_sizes, synthesize  # noqa: E402
from raymsa.search.tune import DRIVER_RESOURCE, DataHandle, Job, TrialResources, TuneRun  # noqa: E402

GiB = 2**30
TINY_SCALE = 0.005  # MOSEI-like: 82 training samples
BATCH = 64  # training and evaluation batch


# ---- inside the trials -------------------------------------------------------------------------


def _wait_for(path: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _trim_heap() -> None:
    """Give freed heap back to the OS (glibc keeps it otherwise): what is left is what the process
    holds. In the trials, the freed batches and activations of the training steps (some hundred
    MiB per process, whatever the data size) would otherwise hide what the data cost."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def make_held_trial(sync_dir: str, last_epoch: int):
    """The study's trial function (raymsa.search.tune._trial, run unchanged in the worker) with a
    session that, at the run's last epoch, stops while the loop still holds the data: it says
    'ready', trims its heap when told to and says 'trimmed', and goes on when released."""

    def held_trial(config, spec, data, storage=None):
        import raymsa.search.tune as t  # the worker's own import: the real _trial

        sync = Path(sync_dir)

        class HoldSession(t._TrialSession):
            def report(self, metrics, checkpoint_dir=None):
                if metrics["epoch"] >= last_epoch:
                    (sync / f"ready-{os.getpid()}").write_text("")
                    _wait_for(sync / "trim")
                    _trim_heap()
                    (sync / f"trimmed-{os.getpid()}").write_text("")
                    _wait_for(sync / "release")
                super().report(metrics, checkpoint_dir)

        t._TrialSession = HoldSession
        t._trial(config, spec, data, storage)

    return held_trial


@dataclass(frozen=True)
class PrivateCopy(DataHandle):
    """A handle whose every get() is a private, writable copy (the contrast: one copy per trial)."""

    def get(self):
        return copy.deepcopy(ray.get(self.ref))


# ---- memory --------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _pss(pid: int) -> dict[str, int]:
    """PSS of one process in bytes: 'anon' (private heap: trial copies would land here), 'shmem'
    (shared memory: the object store's pages), 'file' (mapped libraries)."""
    out = {"anon": 0, "shmem": 0, "file": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("Pss_Anon", "Pss_Shmem", "Pss_File"):
                    out[key[4:].lower()] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "?"
    if pid == os.getpid():
        return "driver"
    if "raylet" in cmd:
        return "raylet (object store)"
    if cmd.startswith("ray::"):
        return "trial workers" if "ImplicitFunc" in cmd or "IDLE" not in cmd else "idle workers"
    return "other Ray services"


def memory_snapshot() -> dict:
    """Summed PSS of this process tree, by kind of process, and the system-wide used memory."""
    kids, todo, tree = _children(), [os.getpid()], []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += kids.get(pid, [])
    by_kind: dict[str, int] = {}
    parts = {"anon": 0, "shmem": 0, "file": 0}
    for pid in tree:
        p = _pss(pid)
        k = _name(pid)
        by_kind[k] = by_kind.get(k, 0) + sum(p.values())
        for key in parts:
            parts[key] += p[key]
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
    return {"pss": sum(parts.values()), **{f"pss_{k}": v for k, v in parts.items()}, "by_kind": by_kind,
            "processes": len(tree), "system_used": info["MemTotal"] - info["MemAvailable"]}


# ---- one variant -------------------------------------------------------------------------------


def make_data(variant: str, args) -> MMSAData:
    if variant != "tiny":
        return synthesize(args.like, seed=0, scale=args.scale)
    # the baseline: as few samples as still fill one training and one evaluation batch, so every
    # tensor a step allocates has the same shape as with the big data (only the data differ)
    d = synthesize(args.like, seed=0, scale=TINY_SCALE)
    if len(d["train"]) < BATCH:
        raise SystemExit(f"--like {args.like}: scale {TINY_SCALE} gives fewer than {BATCH} training samples")
    tr = d["train"]
    return MMSAData(splits={"train": tr, "valid": tr, "test": tr}, dataset=d.dataset, source="tiny")


def run_variant(variant: str, args, work: Path) -> dict:
    sync = work / f"sync-{variant}"
    sync.mkdir()
    ray.init(address="local", num_cpus=args.trials, resources={DRIVER_RESOURCE: args.trials},
             object_store_memory=args.object_store_gib * GiB, include_dashboard=True,
             configure_logging=False, _temp_dir=str(work / "ray"))
    try:
        t0 = time.perf_counter()
        data = make_data(variant, args)
        nbytes = sum({id(s): s.nbytes for s in data.splits.values()}.values())  # tiny: one split, thrice
        # the baseline trains for as many steps as the big runs: glibc keeps freed batches and grows
        # that slack with the steps taken, so fewer steps would make the slack look like data
        steps_per_epoch = math.ceil(len(data["train"]) / BATCH)
        steps_big = math.ceil(split_sizes(args.like, args.scale)["train"] / BATCH) * args.epochs
        epochs = math.ceil(steps_big / steps_per_epoch) if variant == "tiny" else args.epochs
        if variant == "mapped":  # the study's path: a folder of .npy files every trial memory-maps
            from raymsa.data.arrays import write_arrays

            handle = DataHandle(folder=str(write_arrays(data, work / "arrays-mapped").path))
        else:
            handle = (PrivateCopy if variant == "private" else DataHandle)(ray.put(data))
        del data
        _trim_heap()
        print(f"[bench] {variant}: {nbytes / GiB:.3f} GiB of {args.like}-like data in the object store "
              f"({time.perf_counter() - t0:.0f}s); {args.trials} trials start", flush=True)

        base = {
            "model": {"name": "fsrf", "variant": "tiny"},
            "data": {"like": args.like},
            "scenario": {"kind": "intra", "levels": [0.0]},
            "train": {"epochs": epochs, "batch_size": BATCH, "eval_batch_size": BATCH, "seed": 1,
                      "eval_test": False, "select_metric": "MAE"},
            "resources": {"workers": 1, "cpus_per_worker": 1},
        }
        jobs = {f"seed{s}": Job({**base, "train": {**base["train"], "seed": s}}) for s in range(args.trials)}
        tr = TuneRun(work / "tune", f"memory-{variant}", TrialResources(1, 1.0, 0.0), max_concurrent=args.trials)
        tune_mod._trial = make_held_trial(str(sync), epochs)  # TuneRun.tuner wraps this one
        errors: list[BaseException] = []

        def fit():
            try:
                tune_mod.run_jobs(jobs, handle, tr)
            except BaseException as e:  # noqa: BLE001 - raised below
                errors.append(e)

        def wait_all(prefix: str) -> None:
            while len(list(sync.glob(f"{prefix}-*"))) < args.trials:
                if not th.is_alive():
                    raise RuntimeError(f"{variant}: the trials ended early: {errors}")
                if time.perf_counter() - t1 > 900:
                    raise TimeoutError(f"{variant}: trials not {prefix} after 900 s")
                time.sleep(0.2)

        def measure() -> dict:
            time.sleep(1.0)  # let the last allocations settle
            snaps = [memory_snapshot() for _ in range(3) if time.sleep(0.3) is None]
            mid = sorted(snaps, key=lambda x: x["pss"])[1]
            return {**{k: mid[k] for k in ("pss", "pss_anon", "pss_shmem", "pss_file", "processes")},
                    "by_kind": mid["by_kind"], "system_used": statistics.median(x["system_used"] for x in snaps)}

        th = threading.Thread(target=fit, daemon=True)
        t1 = time.perf_counter()
        th.start()
        wait_all("ready")
        ready_s = time.perf_counter() - t1
        as_is = measure()
        (sync / "trim").write_text("")
        wait_all("trimmed")
        trimmed = measure()
        (sync / "release").write_text("")
        th.join(timeout=300)
        if errors:
            raise RuntimeError(f"{variant}: {errors[0]}")
        return {"variant": variant, "dataset_bytes": nbytes, "trials": args.trials, "seconds_to_ready": ready_s,
                "epochs": epochs, "training_steps": epochs * steps_per_epoch,
                "trimmed": trimmed, "as_is": as_is}
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_data_memory.json")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--like", default="mosei", choices=["mosi", "mosei", "sims"])
    p.add_argument("--scale", type=float, default=0.135, help="of the real split sizes; mosei 0.135 = 1.07 GiB")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--object-store-gib", type=int, default=3, help="the same for every variant")
    p.add_argument("--skip-private", action="store_true", help="only tiny and shared (a third of the memory)")
    args = p.parse_args(argv)

    real_trial = tune_mod._trial
    results = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raymsa-bench-mem-") as tmp:
        try:
            for variant in ["tiny", "mapped", "shared"] + ([] if args.skip_private else ["private"]):
                results[variant] = run_variant(variant, args, Path(tmp))
                tune_mod._trial = real_trial
        finally:
            tune_mod._trial = real_trial

    tiny = results["tiny"]
    for name, r in results.items():
        extra = r["dataset_bytes"] - tiny["dataset_bytes"]
        for state in ("trimmed", "as_is"):
            m, m0 = r[state], tiny[state]
            for key, src in (("multiplier", "pss"), ("multiplier_anon", "pss_anon"),
                             ("multiplier_shmem", "pss_shmem"), ("multiplier_system", "system_used")):
                m[key] = None if name == "tiny" else (m[src] - m0[src]) / extra

    def f(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)

    print()
    print(f"{args.trials} concurrent trials (tiny FSRF, {args.epochs} epoch over every training sample, then "
          f"validation), {args.like}-like data; memory = summed PSS of this process tree, in GiB")
    print(f"{'variant':<8} {'heaps':<8} {'data':>6} {'PSS':>6} {'private':>8} {'shared':>7} | {'multiplier':>10} "
          f"{'private':>8} {'shared':>7} {'system-wide':>11}")
    for r in results.values():
        for state in ("trimmed", "as_is"):
            m = r[state]
            print(f"{r['variant']:<8} {state.replace('_', ' '):<8} {r['dataset_bytes'] / GiB:>6.3f} "
                  f"{m['pss'] / GiB:>6.2f} {m['pss_anon'] / GiB:>8.2f} {m['pss_shmem'] / GiB:>7.2f} | "
                  f"{f(m['multiplier']):>10} "
                  f"{f(m['multiplier_anon']):>8} {f(m['multiplier_shmem']):>7} {f(m['multiplier_system']):>11}")
    print("private = Pss_Anon (heaps), shared = Pss_Shmem (the object store); multiplier = memory over tiny / data "
          "bytes over tiny.\n'trimmed': each trial's freed heap returned (malloc_trim) before reading; 'as is': "
          "not (glibc keeps\nthe training steps' freed batches: a few hundred MiB per trial, levelling off as the "
          "data grow). system-wide =\nMemTotal - MemAvailable, moved by anything else running on the machine.")
    shared, private = results["shared"]["trimmed"], results.get("private", {}).get("trimmed")
    summary = {"multiplier_mapped": results["mapped"]["trimmed"]["multiplier"],
               "multiplier_mapped_as_is": results["mapped"]["as_is"]["multiplier"],
               "multiplier_shared": shared["multiplier"],
               "multiplier_shared_as_is": results["shared"]["as_is"]["multiplier"], "goal": 1.3,
               "seconds": round(time.perf_counter() - t0)}
    print(f"\nmapped (the study's path): {summary['multiplier_mapped']:.2f} copies of the data for {args.trials} "
          f"trials ({summary['multiplier_mapped_as_is']:.2f} with untrimmed heaps)")
    line = (f"shared (object store): {summary['multiplier_shared']:.2f} copies of the data for {args.trials} trials (goal <= 1.3; "
            f"{summary['multiplier_shared_as_is']:.2f} with untrimmed heaps)")
    if private is not None:
        summary["multiplier_private"] = private["multiplier"]
        summary["private_over_shared"] = private["multiplier"] / shared["multiplier"]
        line += (f"; a private copy per trial: {summary['multiplier_private']:.2f}, "
                 f"{summary['private_over_shared']:.1f}x as much")
    print(line)

    out = {"benchmark": "data_memory", "summary": summary, "variants": list(results.values()),
           "settings": vars(args), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                               "python": platform.python_version(), "ray": ray.__version__}}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

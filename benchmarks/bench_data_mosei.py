"""The study's data path at MOSEI size: driver memory, what trials map, and what goes to /tmp.

    python -m raymsa.data synth --like mosei --out F          # ~8.5 GB, about a minute
    python benchmarks/bench_data_mosei.py --data F [--storage DIR] [--trials 2] [--out bench_data_mosei.json]

Runs the study's own code on F, in this process as the study's driver:
  1. StudyRunner.load_data (raymsa.data.arrays.prepare_arrays): the file is converted once to .npy
     files under <storage>/.arrays; then loaded again (the folder exists: what every later study pays);
  2. start_ray (raymsa.cluster), as `python -m raymsa.study` starts a local Ray;
  3. --trials concurrent Tune trials get the study's DataHandle: 'full' trials touch every page of
     every array (SplitTensors over all samples), 'smoke' trials only the first 96 training and 48
     evaluation samples (the smoke overlay's max_train / max_eval).

Reported: the driver's peak and steady RSS over the dataset's size (VmHWM, reset per phase through
/proc/self/clear_refs; goal <= 1.2), each trial's resident file pages (what it mapped) and private
memory, Ray's own count of spilled bytes, and the size of this Ray session's folder under /tmp.
Needs about 1.2x the dataset of free memory and 1x of disk under --storage (the .npy folder,
deleted at the end unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

GiB = 2**30


def status(pid: int | str = "self") -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    return out


class Peak:
    """The driver's peak RSS over one phase: VmHWM after resetting it, and a 0.05 s sampler as a check."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        self.sampled, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        self.t0 = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sampled = max(self.sampled, status()["VmRSS"])
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()
        s = status()
        self.peak, self.after = max(s["VmHWM"], self.sampled), s["VmRSS"]


def _probe(config, data):
    """A trial as the study's: DataHandle.get, then SplitTensors over its samples, every page touched."""
    import torch
    from ray import tune

    from raymsa.train.batches import SplitTensors

    d = data.get()
    limits = {"full": (None, None), "smoke": (96, 48)}[config["kind"]]
    total = 0.0
    for name in ("train", "valid", "test"):
        t = SplitTensors.from_split(d[name], limits[0] if name == "train" else limits[1])
        for x in t.feats.values():
            for chunk in torch.split(x, 256):  # (<=256, T, D): reads the pages, copies none at once
                total += float(chunk.sum())
    s = status()
    tune.report({"rss_file": s["RssFile"], "rss_anon": s["RssAnon"], "checksum": total})


def tmp_bytes(path: str) -> int:
    try:
        return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0])
    except (IndexError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an MMSA pickle, e.g. synthetic MOSEI-size")
    p.add_argument("--storage", default=None, help="the study storage (default: beside --data)")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the .npy folder")
    p.add_argument("--out", default="bench_data_mosei.json")
    args = p.parse_args(argv)

    import ray
    from ray import tune

    from raymsa.search.tune import DRIVER_RESOURCE
    from raymsa.cluster import start_ray
    from raymsa.study.config import load_study
    from raymsa.study.runner import StudyRunner

    data_path = Path(args.data).resolve()
    storage = Path(args.storage or data_path.parent / "bench-storage").resolve()
    study, spaces, _ = load_study("fsrf_sweep", overrides=[f"data.path={data_path}"])
    res: dict = {"data": str(data_path), "file_bytes": data_path.stat().st_size, "trials": args.trials}
    base = status()["VmRSS"]
    res["driver_rss_before"] = base
    try:
        runner = StudyRunner(study, spaces, storage / study.name, resume=False)
        with Peak() as first:
            runner.load_data()
        nbytes = runner.data.get().nbytes
        res.update(dataset_bytes=nbytes, convert_seconds=first.seconds, convert_peak=first.peak,
                   convert_after=first.after)
        with Peak() as again:
            StudyRunner(study, spaces, storage / study.name, resume=False).load_data()
        res.update(reload_seconds=again.seconds, reload_peak=again.peak)

        with Peak() as up:
            ctx = start_ray(None, resources={DRIVER_RESOURCE: 1000}, num_cpus=args.trials, configure_logging=False)
        session = ctx.address_info["session_dir"]
        res["ray_start_peak"] = up.peak
        for kind in ("full", "smoke"):
            with Peak() as run:
                grid = tune.Tuner(
                    tune.with_resources(tune.with_parameters(_probe, data=runner.data), {"CPU": 1}),
                    param_space={"kind": kind, "i": tune.grid_search(list(range(args.trials)))},
                    tune_config=tune.TuneConfig(max_concurrent_trials=args.trials),
                    run_config=tune.RunConfig(storage_path=str(storage / "tune"), name=f"probe-{kind}", verbose=0),
                ).fit()
            errors = [r.error for r in grid if r.error]
            if errors:
                raise RuntimeError(errors[0])
            res[kind] = {"driver_peak": run.peak, "seconds": run.seconds,
                         "trial_rss_file": [r.metrics["rss_file"] for r in grid],
                         "trial_rss_anon": [r.metrics["rss_anon"] for r in grid]}
        from ray._private.internal_api import memory_summary

        summary = memory_summary(address=ctx.address_info["gcs_address"], stats_only=True)
        res["ray_memory_summary"] = summary
        res["spilled_lines"] = [line.strip() for line in summary.splitlines() if "pilled" in line]
        res["ray_session_tmp_bytes"] = tmp_bytes(session)
        res["ray_session_dir"] = session
        res["driver_steady"] = status()["VmRSS"]
        ray.shutdown()
    finally:
        if not args.keep:
            shutil.rmtree(storage / ".arrays", ignore_errors=True)
    n = res["dataset_bytes"]
    res["summary"] = {
        "driver_peak_over_data": max(res["convert_peak"], res["ray_start_peak"], res["full"]["driver_peak"]) / n,
        "driver_peak_when_converted_before_over_data": max(res["reload_peak"], res["full"]["driver_peak"]) / n,
        "driver_steady_over_data": res["driver_steady"] / n,
        # the same less what the driver held before touching the data (torch, Ray, raymsa imported)
        "driver_peak_above_start_over_data": (max(res["convert_peak"], res["ray_start_peak"],
                                                  res["full"]["driver_peak"]) - base) / n,
        "full_trial_mapped_over_data": max(res["full"]["trial_rss_file"]) / n,
        "smoke_trial_mapped_mib": max(res["smoke"]["trial_rss_file"]) / 2**20,
        "ray_session_tmp_mib": res["ray_session_tmp_bytes"] / 2**20,
        "goal": 1.2,
    }
    s = res["summary"]
    print(f"dataset {n / GiB:.2f} GiB ({data_path.name}); driver RSS before {base / GiB:.2f} GiB")
    print(f"convert once: {res['convert_seconds']:.0f}s, driver peak {res['convert_peak'] / GiB:.2f} GiB, "
          f"after {res['convert_after'] / GiB:.2f} GiB; converted before: {res['reload_seconds']:.2f}s, "
          f"peak {res['reload_peak'] / GiB:.2f} GiB")
    for kind in ("full", "smoke"):
        r = res[kind]
        print(f"{args.trials} {kind} trials: {r['seconds']:.0f}s, driver peak {r['driver_peak'] / GiB:.2f} GiB, "
              f"each trial mapped {[round(x / GiB, 2) for x in r['trial_rss_file']]} GiB of file pages, "
              f"private {[round(x / GiB, 2) for x in r['trial_rss_anon']]} GiB")
    print(f"driver peak / data {s['driver_peak_over_data']:.2f} (goal <= 1.2); with the folder converted before "
          f"{s['driver_peak_when_converted_before_over_data']:.2f}; steady {s['driver_steady_over_data']:.2f}; "
          f"peak above the driver's start {s['driver_peak_above_start_over_data']:.2f}")
    print(f"Ray: {'; '.join(res['spilled_lines']) or 'no spill line'}; session folder in /tmp "
          f"{s['ray_session_tmp_mib']:.1f} MiB ({res['ray_session_dir']})")
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

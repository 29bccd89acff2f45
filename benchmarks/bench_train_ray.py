"""Training throughput inside Ray Train (1 worker, TorchTrainer) vs the bare loop, one run.

    python benchmarks/bench_train_ray.py [--model fsrf] [--epochs 3] [--max-train 512]
                                         [--threads N,M,...] [--out FILE]

For each thread count (default: every core of the machine, then one core fewer) the same config,
data and threads run bare / bare beside an idle Ray / Ray Train / bare, so machine noise that drifts
over the run falls on both sides; the ratio is Ray's training samples/s over the mean of the two
bare runs (epochs after the first, which pays one-off warm-up). Goal: >= 0.95.

Why two thread counts: Ray's own processes (raylet, GCS, dashboard, log monitor, Train's controller
and helper actors) take a few percent of a core and run at niceness 0 while workers run at 15, so on
a worker whose threads fill every core each of their wake-ups preempts one thread of the training
loop's OpenMP team, and its partner waits at the next barrier. With one core left to Ray that cost
disappears; it is the configuration of a GPU node, where a worker holds a GPU and some of the cores.
The bare loop runs at the niceness Ray gives its workers, so load from other processes falls on both
alike. It also reports the fixed start-up cost of a run under Ray: ray.init, and TorchTrainer's wall
time minus the time its epochs took.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def throughput(history: list[dict]) -> float:
    steady = history[1:] or history
    return statistics.mean(h["train_samples_per_s"] for h in steady)


def measure(args, threads: int, data, tmp: Path) -> dict:
    """bare / bare beside an idle Ray / Ray Train / bare, all with `threads` torch threads."""
    import ray

    from raymsa.train.config import parse_train_config
    from raymsa.train.distributed import fit_distributed
    from raymsa.train.loop import run
    from raymsa.train.session import LocalSession

    cfg = parse_train_config({
        "model": {"name": args.model},
        "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
        "data": {"max_train": args.max_train, "max_eval": 128},
        "train": {"epochs": args.epochs, "threads": threads, "eval_test": False},
        "resources": {"workers": 1, "cpus_per_worker": threads},
    }, "benchmark")
    tmp = tmp / f"threads{threads}"

    def bare(tag: str) -> dict:
        t0 = time.perf_counter()
        res = run(cfg, data, LocalSession(tmp / tag, resume=False, log=False), verbose=False)
        return {"wall_s": time.perf_counter() - t0, "samples_per_s": throughput(res.history), "history": res.history}

    first = bare("bare1")
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, configure_logging=False)
    init_s = time.perf_counter() - t0
    ref = ray.put(data)
    # the same bare loop while Ray's daemons run idle beside it: separates their CPU share on a
    # small machine from the cost of Ray Train itself
    beside = bare("bare_beside_ray")
    t0 = time.perf_counter()
    res = fit_distributed(cfg, ref, storage_path=tmp / "ray", name="bench", verbose=False)
    ray_wall = time.perf_counter() - t0
    ray.shutdown()
    second = bare("bare2")

    ray_tp = throughput(res.history)
    bare_tp = statistics.mean([first["samples_per_s"], second["samples_per_s"]])
    # time the epochs themselves took under Ray (training + validation), from the bare runs' share
    epoch_s = sum(h["train_time_s"] for h in res.history)
    bare_other = statistics.mean([b["wall_s"] - sum(h["train_time_s"] for h in b["history"]) for b in (first, second)])
    return {
        "threads": threads,
        "bare_samples_per_s": [first["samples_per_s"], second["samples_per_s"]],
        "ray_train_samples_per_s": ray_tp, "ratio_ray_over_bare": ray_tp / bare_tp,
        "bare_beside_idle_ray_samples_per_s": beside["samples_per_s"],
        "ratio_ray_over_bare_beside_ray": ray_tp / beside["samples_per_s"],
        "ray_init_s": init_s, "torchtrainer_wall_s": ray_wall,
        "bare_wall_s": [first["wall_s"], second["wall_s"]], "ray_fixed_startup_s": ray_wall - epoch_s - bare_other,
        "wall_s": {"bare_before": first["wall_s"], "bare_beside": beside["wall_s"], "bare_after": second["wall_s"]},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fsrf")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train", type=int, default=512)
    cores = os.cpu_count() or 1
    p.add_argument("--threads", default=",".join(str(n) for n in dict.fromkeys([cores, max(1, cores - 1)])),
                   help="torch threads (= the worker's CPUs), one measurement each; default: every core, "
                        "then one fewer")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    # Ray starts its workers at niceness 15 (RAY_worker_niceness); the bare loop runs at the same
    # priority, or any other load on the machine would favour it and the ratio would measure that.
    ray_nice = int(os.environ.get("RAY_worker_niceness", 15))
    os.nice(max(0, ray_nice - os.nice(0)))

    from raymsa.data import load_default

    data = load_default()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-ray-"))
    runs = [measure(args, int(n), data, tmp) for n in args.threads.split(",")]

    print(f"model {args.model}, {args.max_train} training samples, {args.epochs} epochs, {cores} cores")
    print(f"{'threads':>7} {'run':<22}{'train samples/s':>16}{'wall s':>10}")
    for r in runs:
        rows = [("bare loop (before)", r["bare_samples_per_s"][0], r["wall_s"]["bare_before"]),
                ("bare, Ray idle beside", r["bare_beside_idle_ray_samples_per_s"], r["wall_s"]["bare_beside"]),
                ("Ray Train, 1 worker", r["ray_train_samples_per_s"], r["torchtrainer_wall_s"]),
                ("bare loop (after)", r["bare_samples_per_s"][1], r["wall_s"]["bare_after"])]
        for name, tp, wall in rows:
            print(f"{r['threads']:>7} {name:<22}{tp:>16.1f}{wall:>10.1f}")
    for r in runs:
        note = "every core" if r["threads"] >= cores else f"{cores - r['threads']} core(s) left to Ray"
        print(f"{r['threads']} threads ({note}): ratio Ray Train / bare {r['ratio_ray_over_bare']:.3f} (goal >= 0.95); "
              f"/ bare beside an idle Ray {r['ratio_ray_over_bare_beside_ray']:.3f}; fixed start-up: ray.init "
              f"{r['ray_init_s']:.1f} s + TorchTrainer {r['ray_fixed_startup_s']:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "model": args.model, "epochs": args.epochs, "max_train": args.max_train, "cores": cores, "runs": runs,
        }, indent=1))


if __name__ == "__main__":
    main()

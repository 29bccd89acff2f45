"""Training throughput inside Ray Train (1 worker, TorchTrainer) vs the bare loop, one run.

    python benchmarks/bench_train_ray.py [--model fsrf] [--epochs 3] [--max-train 512] [--out FILE]

The same config, data and thread count run bare / bare beside an idle Ray / Ray Train / bare, so machine noise
that drifts over the run falls on both sides; the ratio is Ray's training samples/s over the mean of
the two bare runs (epochs after the first, which pays one-off warm-up). Goal: >= 0.95.
The bare loop runs at the niceness Ray gives its workers, so load from other processes falls on both
alike. It also reports the fixed start-up cost of a run under Ray: ray.init, and TorchTrainer's wall time
minus the time its epochs took.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fsrf")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    # Ray starts its workers at niceness 15 (RAY_worker_niceness); the bare loop runs at the same
    # priority, or any other load on the machine would favour it and the ratio would measure that.
    ray_nice = int(os.environ.get("RAY_worker_niceness", 15))
    os.nice(max(0, ray_nice - os.nice(0)))

    import ray

    from raymsa.data import load_default
    from raymsa.train.config import parse_train_config
    from raymsa.train.distributed import fit_distributed
    from raymsa.train.loop import run
    from raymsa.train.session import LocalSession

    data = load_default()
    cfg = parse_train_config({
        "model": {"name": args.model},
        "scenario": {"kind": "intra", "levels": [0.0, 0.5]},
        "data": {"max_train": args.max_train, "max_eval": 128},
        "train": {"epochs": args.epochs, "threads": args.threads, "eval_test": False},
        "resources": {"workers": 1, "cpus_per_worker": args.threads},
    }, "benchmark")
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-ray-"))

    def bare(tag: str) -> dict:
        t0 = time.perf_counter()
        res = run(cfg, data, LocalSession(tmp / tag, resume=False, log=False), verbose=False)
        return {"wall_s": time.perf_counter() - t0, "samples_per_s": throughput(res.history), "history": res.history}

    first = bare("bare1")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.threads, include_dashboard=True, configure_logging=False)
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
    startup = ray_wall - epoch_s - bare_other
    out = {
        "model": args.model, "epochs": args.epochs, "max_train": args.max_train, "threads": args.threads,
        "bare_samples_per_s": [first["samples_per_s"], second["samples_per_s"]],
        "ray_train_samples_per_s": ray_tp, "ratio_ray_over_bare": ray_tp / bare_tp,
        "bare_beside_idle_ray_samples_per_s": beside["samples_per_s"],
        "ratio_ray_over_bare_beside_ray": ray_tp / beside["samples_per_s"],
        "ray_init_s": init_s, "torchtrainer_wall_s": ray_wall,
        "bare_wall_s": [first["wall_s"], second["wall_s"]], "ray_fixed_startup_s": startup,
    }
    print(f"model {args.model}, {args.max_train} training samples, {args.epochs} epochs, {args.threads} threads")
    print(f"{'run':<22}{'train samples/s':>16}{'wall s':>10}")
    print(f"{'bare loop (before)':<22}{first['samples_per_s']:>16.1f}{first['wall_s']:>10.1f}")
    print(f"{'bare, Ray idle beside':<22}{beside['samples_per_s']:>16.1f}{beside['wall_s']:>10.1f}")
    print(f"{'Ray Train, 1 worker':<22}{ray_tp:>16.1f}{ray_wall:>10.1f}")
    print(f"{'bare loop (after)':<22}{second['samples_per_s']:>16.1f}{second['wall_s']:>10.1f}")
    print(f"throughput ratio Ray Train / bare: {out['ratio_ray_over_bare']:.3f}  (goal >= 0.95)")
    print(f"Ray Train / bare beside an idle Ray: {out['ratio_ray_over_bare_beside_ray']:.3f}")
    print(f"fixed start-up under Ray: ray.init {init_s:.1f} s + TorchTrainer {startup:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

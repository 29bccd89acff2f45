"""CPU cost of one training epoch at a dataset's full size, measured on fractions and scaled.

    python benchmarks/bench_epoch_cost.py --data F [--config configs/fsrf_intra.yaml] [--storage DIR]
                                          [--train 2048] [--evals 64,512] [--out bench_epoch_cost.json]

One epoch of the config (1 torch thread, validation over the scenario's grid, no test) through the
study's data path (the .npy folder of raymsa.data.arrays, memory-mapped), once per --evals value
with --train training samples. Two validation sizes separate the costs: validation per sample and
rate = the difference over the extra samples x rates, training = the rest. Then the full epoch =
training per sample x all training samples + validation per sample-rate x all validation samples x
rates. CPU seconds (time.process_time), not wall: on a shared machine wall time measures the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="MMSA pickle (converted once to <storage>/.arrays)")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "fsrf_intra.yaml"))
    p.add_argument("--storage", default=None, help="where the .npy folder goes (default: beside --data)")
    p.add_argument("--train", type=int, default=2048)
    p.add_argument("--evals", default="64,512")
    p.add_argument("--out", default="bench_epoch_cost.json")
    args = p.parse_args(argv)

    from raymsa.data.arrays import open_arrays, prepare_arrays
    from raymsa.train.config import DataConfig, load_train_config
    from raymsa.train.loop import run
    from raymsa.train.session import LocalSession

    data_path = Path(args.data).resolve()
    storage = Path(args.storage or data_path.parent / "bench-storage")
    folder = prepare_arrays(DataConfig(path=str(data_path)), storage / ".arrays", log=print).path
    data = open_arrays(folder)
    evals = [int(x) for x in args.evals.split(",")]
    runs = []
    # a first, unrecorded run pays the one-time costs (lazy inits, first page faults), which would
    # otherwise be counted as the first fraction's training
    for n_eval in [None] + evals:
        n_train = args.train if n_eval is not None else 64
        cfg = load_train_config(args.config, ["train.epochs=1", f"data.path={data_path}", f"data.max_train={n_train}",
                                              f"data.max_eval={n_eval or 16}", "train.threads=1", "train.eval_test=false"])
        levels = len(cfg.scenario.levels)
        c0, t0 = time.process_time(), time.perf_counter()
        run(cfg, data, LocalSession(storage / f"epoch-{n_train}-{n_eval}", resume=False), verbose=False)
        if n_eval is None:
            continue
        runs.append({"train": args.train, "eval": n_eval, "levels": levels, "cpu_s": time.process_time() - c0,
                     "wall_s": time.perf_counter() - t0})
        print(f"1 epoch, {args.train} training samples, validation {n_eval} x {levels} rates: "
              f"{runs[-1]['cpu_s']:.1f} s CPU ({runs[-1]['wall_s']:.1f} s wall)", flush=True)
    a, b = runs[0], runs[-1]
    eval_per = (b["cpu_s"] - a["cpu_s"]) / ((b["eval"] - a["eval"]) * a["levels"])
    train_per = (a["cpu_s"] - eval_per * a["eval"] * a["levels"]) / args.train
    n_train, n_valid = len(data["train"]), len(data["valid"])
    full = {"train_s": train_per * n_train, "valid_s": eval_per * n_valid * a["levels"]}
    full["epoch_s"] = full["train_s"] + full["valid_s"]
    print(f"training {train_per * 1000:.1f} ms per sample, validation {eval_per * 1000:.2f} ms per sample and rate; "
          f"a whole epoch ({n_train} training, {n_valid} validation samples): {full['epoch_s']:.0f} s CPU "
          f"({full['train_s']:.0f} training + {full['valid_s']:.0f} validation)")
    Path(args.out).write_text(json.dumps({"runs": runs, "train_ms_per_sample": train_per * 1000,
                                          "valid_ms_per_sample_rate": eval_per * 1000, "full_epoch": full,
                                          "data": str(data_path), "config": args.config}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

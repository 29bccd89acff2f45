"""CPU cost of one training epoch at a dataset's full size, measured on fractions and scaled.

    python benchmarks/bench_epoch_cost.py --data F [--config configs/fsrf_intra.yaml] [--storage DIR]
                                          [--train 2048] [--evals 64,512] [--out bench_epoch_cost.json]

One epoch of the config (1 torch thread, validation over the scenario's grid, no test) through the
study's data path (the .npy folder of raymsa.data.arrays, memory-mapped), once per --evals value
with --train training samples. Two validation sizes separate the costs: validation per sample and
rate = the difference over the extra samples x rates, training = the rest. Then the full epoch =
training per sample x all training samples + validation per sample-rate x all validation samples x
rates. CPU seconds (time.process_time), not wall: on a shared machine wall time measures the others.

    python benchmarks/bench_epoch_cost.py --against b8e9dfd [--data F] [--train 512] [--rounds 2]
                                          [--models late_fusion,fsrf,senti_ifusion] [--out ...]

Old and new side by side: one epoch of each model (configs/fsrf_intra.yaml with model.name set,
1 torch thread, the whole validation split under the intra grid's 10 rates, no test) on this
checkout and on the older commit (a git worktree made here, this venv, PYTHONPATH = the worktree),
each in its own process, old and new alternating for --rounds rounds (medians). Training is
--train samples scaled to the whole training split; validation is timed around the loop's
GridEvaluator.evaluate, which both commits call once per epoch. Data: --data or the embedded
MOSI-like synthetic set. Printed per model: training s, validation s, validation's share of the
epoch, and new / old of validation and of the epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if "--child" not in sys.argv:  # a child measures the raymsa of its PYTHONPATH (this checkout or the worktree)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="MMSA pickle (converted once to <storage>/.arrays); "
                   "required without --against")
    p.add_argument("--against", default=None, help="older commit: compare its epochs with this checkout's")
    p.add_argument("--models", default="late_fusion,fsrf,senti_ifusion")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one measurement, JSON out
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "fsrf_intra.yaml"))
    p.add_argument("--storage", default=None, help="where the .npy folder goes (default: beside --data)")
    p.add_argument("--train", type=int, default=2048)
    p.add_argument("--evals", default="64,512")
    p.add_argument("--out", default="bench_epoch_cost.json")
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if args.against:
        return _compare(args)
    if args.data is None:
        p.error("--data is required (or --against COMMIT to compare epochs on the synthetic data)")

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


def _child(args) -> int:
    """One epoch of one model on the raymsa importable here (PYTHONPATH), timings as JSON to --child."""
    import torch

    from raymsa.data.arrays import open_arrays, prepare_arrays
    from raymsa.train import loop
    from raymsa.train.config import DataConfig, load_train_config
    from raymsa.train.session import LocalSession

    torch.set_num_threads(1)
    folder = prepare_arrays(DataConfig(path=args.data), Path(args.storage) / ".arrays", log=lambda *a, **k: None).path
    data = open_arrays(folder)
    spent = {"valid_s": 0.0, "valid_cpu_s": 0.0}
    evaluate = loop.GridEvaluator.evaluate

    def timed(self, *a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return evaluate(self, *a, **k)
        finally:
            spent["valid_s"] += time.perf_counter() - t0
            spent["valid_cpu_s"] += time.process_time() - c0

    loop.GridEvaluator.evaluate = timed
    out = {}
    for model in args.models.split(","):
        for warm in (True, False):  # a first tiny run pays lazy inits and first page faults
            cfg = load_train_config(args.config, [f"model.name={model}", "train.epochs=1", f"data.path={args.data}",
                                                  f"data.max_train={64 if warm else args.train}",
                                                  f"data.max_eval={16 if warm else len(data['valid'])}",
                                                  "train.threads=1", "train.eval_test=false"])
            spent.update(valid_s=0.0, valid_cpu_s=0.0)
            res = loop.run(cfg, data, LocalSession(Path(args.storage) / f"epoch-{model}", resume=False, log=False),
                           verbose=False)
        train_s = res.history[0]["train_time_s"] * len(data["train"]) / min(args.train, len(data["train"]))
        out[model] = {"train_s": train_s, **spent}
    import raymsa

    out["raymsa"] = str(Path(raymsa.__file__).resolve().parents[1])
    Path(args.child).write_text(json.dumps(out))
    return 0


def _compare(args) -> int:
    import statistics
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="bench-epoch-"))
    if args.data is None:
        from raymsa.data.default import default_data_path, load_default

        load_default("mosi")  # generated and cached once
        args.data = str(default_data_path("mosi"))
    old_tree = work / "old-tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.against], cwd=root, check=True,
                   capture_output=True)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    try:
        for r in range(args.rounds):
            for side, tree in (("old", old_tree), ("new", root)):
                f = work / f"{side}-{r}.json"
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(f), "--data", args.data,
                                "--storage", str(work), "--train", str(args.train), "--models", args.models,
                                "--config", args.config],
                               cwd=tree, env={**__import__("os").environ, "PYTHONPATH": str(tree)}, check=True)
                got = json.loads(f.read_text())
                if Path(got.pop("raymsa")) != tree.resolve():
                    raise SystemExit(f"error: the {side} run imported raymsa from the wrong tree")
                runs[side].append(got)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=root, check=False)

    def med(side, model, key):
        return statistics.median(r[model][key] for r in runs[side])

    print(f"one epoch per model (train scaled from {args.train} samples to the whole split; validation: the whole "
          f"split x 10 intra rates), 1 thread, median of {args.rounds} alternating rounds; wall s; "
          f"old = {args.against}, new = this checkout")
    print(f"{'model':<15}{'train old':>10}{'new':>7}{'valid old':>11}{'new':>7}{'share old':>11}{'new':>6}"
          f"{'valid new/old':>15}{'epoch new/old':>15}")
    table = {}
    for model in args.models.split(","):
        t = {side: (med(side, model, "train_s"), med(side, model, "valid_s")) for side in runs}
        share = {side: v / (tr + v) for side, (tr, v) in t.items()}
        row = {"train_s": {s: t[s][0] for s in t}, "valid_s": {s: t[s][1] for s in t}, "valid_share": share,
               "valid_ratio": t["new"][1] / t["old"][1], "epoch_ratio": sum(t["new"]) / sum(t["old"])}
        table[model] = row
        print(f"{model:<15}{t['old'][0]:>10.1f}{t['new'][0]:>7.1f}{t['old'][1]:>11.1f}{t['new'][1]:>7.1f}"
              f"{100 * share['old']:>10.0f}%{100 * share['new']:>5.0f}%{row['valid_ratio']:>15.2f}"
              f"{row['epoch_ratio']:>15.2f}")
    Path(args.out).write_text(json.dumps({"against": args.against, "train": args.train, "rounds": args.rounds,
                                          "data": args.data, "models": table, "runs": runs}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

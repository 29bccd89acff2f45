"""CPU seconds of evaluating a whole grid: the one-pass evaluator (GridEvaluator.run: levels stacked,
chunks cut to their longest sample, the prediction taken from diagnose where the model hands it back)
against the per-level reference pass it replaced (GridEvaluator.predict per level, then diagnose per
level), same process, same model, alternating.

    python benchmarks/bench_eval.py [--models late_fusion,fsrf,senti_ifusion] [--rounds 2] [--threads 1]
                                    [--out bench_eval.json]

Per model at its default size on the embedded MOSI-like data: validation (valid split, intra grid,
10 rates, predictions only: what every epoch pays) and the final evaluation of one scenario (test
split, intra grid, predictions and diagnostics: what a retrain run pays per scenario). CPU time
(time.process_time; 1 thread), min over rounds; new / old is the figure to read.
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
    p.add_argument("--models", default="late_fusion,fsrf,senti_ifusion")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=256, help="train.eval_batch_size")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch

    from raymsa.data.default import load_default
    from raymsa.missing import ScenarioConfig
    from raymsa.models import DataSpec, build_model
    from raymsa.train.batches import SplitTensors
    from raymsa.train.evaluate import GridEvaluator, split_seed

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    data = load_default("mosi")
    grids = {split: GridEvaluator(SplitTensors.from_split(data[split]), ScenarioConfig(kind="intra"),
                                  split_seed(1111, split)) for split in ("valid", "test")}

    def old(model, split):
        g = grids[split]
        with torch.no_grad():
            for miss in g.masks.values():
                g.predict(model, miss, args.batch, cpu)
            if split == "test":
                g.diagnose(model, args.batch, cpu)

    def new(model, split):
        grids[split].run(model, args.batch, cpu, diagnose=split == "test")

    out = {}
    print(f"CPU s, {args.threads} thread(s), eval batch {args.batch}, min of {args.rounds} alternating rounds")
    print(f"{'model':<15}{'what':<34}{'old':>8}{'new':>8}{'new/old':>9}")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build_model(name, {}, spec=DataSpec.from_data(data, "mosi")).eval()
        model.set_stage(model.stages()[-1].name)
        for split, what in (("valid", "validation (valid, 10 rates)"), ("test", "final eval (test, 10 rates, diag)")):
            times = {"old": [], "new": []}
            for _ in range(args.rounds):
                for side, fn in (("old", old), ("new", new)):
                    c0 = time.process_time()
                    fn(model, split)
                    times[side].append(time.process_time() - c0)
            o, n = min(times["old"]), min(times["new"])
            out[f"{name}/{split}"] = {"old_cpu_s": o, "new_cpu_s": n, "ratio": n / o, "rounds": times}
            print(f"{name:<15}{what:<34}{o:>8.2f}{n:>8.2f}{n / o:>9.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

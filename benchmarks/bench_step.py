"""Seconds per training step (forward + backward + AdamW) of every registered model at its default
size, on MOSI unaligned shapes at batch 64, with text features.

    python benchmarks/bench_step.py [--out bench.json] [--steps 10] [--warmup 3] [--threads 2]
                                    [--text-encoder features|bert] [--models lnln,mult]
                                    [--set lnln.vision_stride=4 ...] [--against COMMIT [--rounds 2]]

--against: old and new side by side. This script of the older commit runs from a git worktree
made here (this venv, PYTHONPATH = the worktree), alternating with this checkout's for --rounds
rounds, each in its own process with the same arguments; printed per model: the median step of
each side and new / old.

Expected on a 2-core CPU: late_fusion ~0.1 s, fsrf and senti_ifusion under 0.5 s each (the goal is
<= 1 s; LNLN's public code takes ~28 s for the same step). The registered lnln and mult at their
public sequence lengths (full attention over 375 audio and 500 vision frames) do not fit a 23 GiB
machine at batch 64 (lnln was killed at 17.6 GiB); bench them at a smaller --batch, or shortened
with --set lnln.vision_stride=4 (see docs/models.md, "Cost"). Every model sees the same batch: random
lengths, ~30% of frames erased (zeroed, masks cleared) and the complete batch attached, so FSRF runs
both views and Senti-iFusion its complete-input targets. The batch is built here with random tensors,
not by raymsa.missing, so that the numbers only depend on the models.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

# runnable from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymsa.batch import MODALITIES, UNK_ID, Batch  # noqa: E402
from raymsa.models import DataSpec, build_model, list_models  # noqa: E402

MOSI = DataSpec(dims={"text": 768, "audio": 5, "vision": 20}, seq_lens={"text": 50, "audio": 375, "vision": 500})


def random_batch(spec: DataSpec, b: int, erase: float, seed: int = 0) -> Batch:
    """Random features (and BERT ids if the spec has them); each sample's length uniform in [1, T]; a
    fraction `erase` of the valid frames zeroed (erased tokens [UNK]); `complete` holds the same batch
    before erasure."""
    g = torch.Generator().manual_seed(seed)
    feats, valid, observed = {}, {}, {}
    for m in MODALITIES:
        t, d = spec.seq_lens[m], spec.dims[m]
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        valid[m] = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        observed[m] = valid[m] & (torch.rand(b, t, generator=g) >= erase)  # (B, T)
        feats[m] = torch.randn(b, t, d, generator=g) * valid[m].unsqueeze(-1)  # (B, T, D)
    labels = torch.rand(b, generator=g) * 6 - 3
    ids = ids_erased = None
    if spec.text_ids:
        tok = torch.randint(1000, 30000, (b, spec.seq_lens["text"]), generator=g) * valid["text"]
        ids = torch.stack([tok, valid["text"].long(), torch.zeros_like(tok)], dim=1)  # (B, 3, T)
        ids_erased = ids.clone()
        ids_erased[:, 0][valid["text"] & ~observed["text"]] = UNK_ID
    complete = Batch(**feats, valid=valid, observed=dict(valid), labels=labels, text_ids=ids)
    erased = {m: feats[m] * observed[m].unsqueeze(-1) for m in MODALITIES}
    return Batch(**erased, valid=valid, observed=observed, labels=labels, text_ids=ids_erased, complete=complete)


class Runner:
    """One model, its optimizer and the weights of its last stage (the one with every part active)."""

    def __init__(self, name: str, spec: DataSpec, text_encoder: str, fields: dict | None = None):
        torch.manual_seed(0)
        self.model = build_model(name, {"text_encoder": text_encoder, **(fields or {})}, spec=spec).train()
        self.model.set_stage(self.model.stages()[-1].name)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=1e-4)
        self.weights = self.model.loss_weights()
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.times: list[float] = []

    def step(self, batch: Batch) -> float:
        t0 = time.perf_counter()
        inputs, targets = batch.split("unknown")  # the default arm: the model sees no erasure mask
        out = self.model(inputs, targets)
        loss = F.mse_loss(out["pred"], targets.labels) + sum(self.weights[k] * v for k, v in out["losses"].items())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--erase", type=float, default=0.3)
    ap.add_argument("--text-encoder", choices=["features", "bert"], default="features",
                    help="'bert': the in-code 2-layer BERT (hidden 128) over token ids instead of features")
    ap.add_argument("--against", default=None, help="older commit to compare with (a git worktree)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", help="comma-separated models (late_fusion, the baseline, is always added); "
                    "default: every registered model")
    ap.add_argument("--set", action="append", default=[], metavar="MODEL.FIELD=VALUE",
                    help="a model config field, e.g. lnln.vision_stride=4 (repeatable)")
    args = ap.parse_args()
    if args.against:
        return compare(args)

    torch.set_num_threads(args.threads)
    spec = DataSpec(MOSI.dims, MOSI.seq_lens, text_ids=args.text_encoder == "bert")
    batch = random_batch(spec, args.batch, args.erase)
    chosen = args.models.split(",") if args.models else list_models()
    names = ["late_fusion"] + [n for n in chosen if n != "late_fusion"]
    fields: dict[str, dict] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        model, _, field = key.partition(".")
        fields.setdefault(model, {})[field] = yaml.safe_load(value)
    runners = {name: Runner(name, spec, args.text_encoder, fields.get(name)) for name in names}
    for r in runners.values():
        for _ in range(args.warmup):
            r.step(batch)
    # round-robin, so that load from other processes falls on every model alike
    for _ in range(args.steps):
        for r in runners.values():
            r.times.append(r.step(batch))
    rows = {name: {"params": r.params, "step_s": statistics.median(r.times)} for name, r in runners.items()}
    base = rows["late_fusion"]["step_s"]
    if fields:
        print(f"fields: {fields}")
    print(f"batch {args.batch}, MOSI unaligned shapes, text {args.text_encoder}, erase {args.erase}, "
          f"{args.threads} threads, median of {args.steps} round-robin steps after {args.warmup} warm-up")
    print(f"{'model':<15}{'params':>12}{'step s':>10}{'x late':>9}")
    for name, r in rows.items():
        r["ratio_to_late_fusion"] = r["step_s"] / base
        print(f"{name:<15}{r['params']:>12,}{r['step_s']:>10.3f}{r['ratio_to_late_fusion']:>9.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"fields": fields, "batch": args.batch, "erase": args.erase, "text_encoder": args.text_encoder, "threads": args.threads,
                "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__,
                "machine": platform.processor() or platform.machine()}
        args.out.write_text(json.dumps({"config": meta, "models": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")


def compare(args) -> None:
    import os
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="bench-step-"))
    old_tree = work / "old-tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.against], cwd=root, check=True,
                   capture_output=True)
    same = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
            "--batch", str(args.batch), "--erase", str(args.erase), "--text-encoder", args.text_encoder]
    # both sides bench the same models: left out, the old side ran every model, lnln and mult at
    # their public lengths included, which do not fit this machine (killed)
    same += (["--models", args.models] if args.models else []) + [a for kv in args.set for a in ("--set", kv)]
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    try:
        for r in range(args.rounds):
            for side, tree in (("old", old_tree), ("new", root)):
                f = work / f"{side}-{r}.json"
                subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_step.py"), "--out", str(f), *same],
                               cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                               stdout=subprocess.DEVNULL)
                runs[side].append(json.loads(f.read_text())["models"])
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=root, check=False)
    print(f"training step, batch {args.batch}, MOSI unaligned shapes, {args.threads} threads; median of "
          f"{args.steps} steps per run, median over {args.rounds} alternating runs per side; "
          f"old = {args.against}, new = this checkout")
    print(f"{'model':<15}{'old s':>9}{'new s':>9}{'new/old':>9}")
    rows = {}
    for name in runs["new"][0]:
        old = statistics.median(r[name]["step_s"] for r in runs["old"] if name in r)
        new = statistics.median(r[name]["step_s"] for r in runs["new"])
        rows[name] = {"old_s": old, "new_s": new, "ratio": new / old}
        print(f"{name:<15}{old:>9.3f}{new:>9.3f}{new / old:>9.2f}")
    if args.out:
        args.out.write_text(json.dumps({"against": args.against, "models": rows, "runs": runs}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

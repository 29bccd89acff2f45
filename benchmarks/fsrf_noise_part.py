"""How much label content FSRF's noise parts keep (docs/models.md, "noise kept out of the prediction").

Trains fsrf at the study budget (5 epochs, batch 64, lr 1e-3, patience 3, one thread) under intra on
the embedded MOSI-like data with the given w_noise, then reads the noise parts N_m of the selected
model on valid and test at r = 0 and 0.5 and prints, per modality:
- the mean over dims of the squared correlation with the label on test, and the same with the labels
  shuffled (its chance floor);
- the held-out R^2 of a ridge from all of N_m's dims to the label (fitted on valid, scored on test,
  best of a few ridge strengths): the joint linear label content a per-dim measure can miss.

    python benchmarks/fsrf_noise_part.py --w-noise 1.0 [--w-noise 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from raymsa.batch import MODALITIES
from raymsa.data import load_default
from raymsa.missing import split_seed
from raymsa.models import DataSpec, build_model
from raymsa.train.batches import SplitTensors
from raymsa.train.config import parse_train_config
from raymsa.train.evaluate import GridEvaluator
from raymsa.train.loop import run
from raymsa.train.session import LocalSession


def noise_parts(model, data, cfg, split: str, level: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    t = SplitTensors.from_split(data[split], None)
    ev = GridEvaluator(t, cfg.scenario, split_seed(cfg.train.seed, split), levels=[level])
    miss = next(iter(ev.masks.values()))
    out: dict[str, list[torch.Tensor]] = {m: [] for m in MODALITIES}
    with torch.no_grad():
        for b in ev.batches(miss, 256, torch.device("cpu")):
            p = model.parts(b.model_input(cfg.scenario.knowledge))
            for m in MODALITIES:
                out[m].append(p["noi"][m])
    return {m: torch.cat(v).numpy() for m, v in out.items()}, t.labels.numpy()


def sq_corr(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(0), y - y.mean()
    return float(((xc * yc[:, None]).mean(0) ** 2 / (xc.var(0) * yc.var() + 1e-8)).mean())


def ridge_r2(x_fit, y_fit, x_test, y_test) -> float:
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a, b = (x_fit - mu) / sd, (x_test - mu) / sd
    best = -np.inf
    for lam in (1e-2, 1e-1, 1, 10, 100, 1000):
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (y_fit - y_fit.mean()))
        pred = b @ w + y_fit.mean()
        best = max(best, 1 - ((y_test - pred) ** 2).mean() / y_test.var())
    return float(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--w-noise", type=float, action="append", required=True)
    ap.add_argument("--seed", type=int, default=1111)
    ap.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    args = ap.parse_args()
    data = load_default("mosi")
    root = Path(args.out or tempfile.mkdtemp(prefix="fsrf-noise-"))
    rng = np.random.default_rng(0)
    for w in args.w_noise:
        cfg = parse_train_config({
            "model": {"name": "fsrf", "w_noise": w}, "data": {"path": None, "like": "mosi"},
            "scenario": {"kind": "intra"},
            "train": {"epochs": 5, "batch_size": 64, "lr": 1e-3, "seed": args.seed, "patience": 3, "threads": 1}},
            "fsrf_noise_part")
        res = run(cfg, data, LocalSession(root / f"w{w:g}", resume=False, log=False), verbose=False)
        st = torch.load(root / f"w{w:g}" / "checkpoint" / "state.pt", weights_only=True)
        model = build_model("fsrf", cfg.model, spec=DataSpec.from_data(data, "mosi"))
        model.load_state_dict(st["best_model"])
        model.eval()
        mae = np.mean([v["MAE"] for v in res.test.values()])
        print(f"w_noise {w:g}: test MAE mean over the intra grid {mae:.4f}; "
              f"train loss/noise per epoch {[round(h.get('loss/noise', float('nan')), 4) for h in res.history]}")
        for level in (0.0, 0.5):
            nv, yv = noise_parts(model, data, cfg, "valid", level)
            nt, yt = noise_parts(model, data, cfg, "test", level)
            for m in MODALITIES:
                print(f"  r={level:g} {m:<6} per-dim sq corr {sq_corr(nt[m], yt):.4f} "
                      f"(shuffled {sq_corr(nt[m], rng.permutation(yt)):.4f})  "
                      f"ridge R^2 valid->test {ridge_r2(nv[m], yv, nt[m], yt):.3f}", flush=True)


if __name__ == "__main__":
    main()

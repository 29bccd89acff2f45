"""HPO efficiency: random search, TPE, TPE + successive halving and TPE + halving + warm start, at one
trial-epoch budget, over many repetitions, with a bootstrap interval.

    nice -n 10 python benchmarks/bench_hpo.py [--out bench_hpo.json] [--plot bench_hpo.png] [--reps 10]
                                              [--trials 12] [--epochs 12] [--grace 2] [--rf 3] [--batch 2]
    python benchmarks/bench_hpo.py --from-json bench_hpo.json      (the figures again from a saved run)

Why in-process Optuna and not the study's Ray Tune search: the model here trains an epoch in tens of
milliseconds, while a Tune trial costs about a second to start and a batch waits for its slowest
trial; Ray's overhead would be most of the wall time and 5 searches x 10 repetitions would not fit the
15 minutes this benchmark is allowed on the shared machine. What is compared are the study's own
choices, through the same Optuna objects the study hands to OptunaSearch: TPESampler(multivariate,
group, constant_liar, n_startup_trials = a quarter of the trials), enqueue_trial for the warm start
(what OptunaSearch's points_to_evaluate does). Halving is Optuna's SuccessiveHalvingPruner, not the
study's BatchedHalving: the same rungs (grace * rf^k judged epochs) and cutoff (top 1/rf at a rung),
but compared with every trial that reached the rung before, not only earlier batches. Trials are asked in batches of --batch, as the study's
ConcurrencyLimiter(batch=True) does (the constant liar sees the running batch siblings).

The model: a tiny late-fusion regressor on the embedded synthetic MOSI-like data (features
mean-pooled over valid frames, one linear encoder per modality, a fused MLP head and one auxiliary
head per modality), trained with missingness drawn per epoch and validated under fixed masks. Its
9 searched parameters mirror the study's kinds: learning rate, weight decay, dropout, width, three
auxiliary-loss weights, the L1/MSE mix and a modality-dropout rate. Every trial trains from the same
seed, so the objective is a deterministic function of the config.

Methods (each repetition r has its own sampler seed; same budget = --trials x --epochs trial-epochs):
    random           RandomSampler, every trial runs --epochs
    tpe              TPE, every trial runs --epochs
    tpe+halving      TPE + SuccessiveHalvingPruner(min_resource=--grace, reduction_factor=--rf),
                     trials are asked until the budget is spent (more, shorter trials)
    tpe+halving+warm tpe+halving whose first trial is the best config of a tpe+halving search of the
                     same repetition under the `mixed` scenario (the scenario the study searches first
                     with search.warm_start; that search's cost is not counted: a study runs it anyway)

Figures (validation MAE of the `intra` scenario, what the search sees, never test):
    target               median over repetitions of random search's final best
    epochs_to_target     per repetition, trial-epochs until the best-so-far reaches the target
                         (never within the budget: infinite, so it counts as a miss)
    ratio                median epochs_to_target of a method / the budget (random's own figure: it
                         reaches its median final best at the end of its budget), with a 95 %
                         percentile bootstrap interval (repetitions of random, which move the target,
                         and of the method resampled independently; analyse())
    regret curve         median and quartiles over repetitions of best-so-far minus the best value any
                         run found, against trial-epochs (--plot)
Goal (issue 21): ratio <= 0.5 for tpe+halving (+warm), with the interval's upper end below 1.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

METHODS = ("random", "tpe", "tpe+halving", "tpe+halving+warm")
MODALITIES = ("text", "audio", "vision")


# ---- data and scenarios -------------------------------------------------------------------------

def pooled_data(max_train: int | None = None):
    """{split: (features per modality (N, D), labels (N,))}, the mean over each sample's valid frames."""
    from raymsa.data.default import load_default

    data = load_default("mosi")
    out = {}
    for split in ("train", "valid"):
        s = data[split]
        n = len(s) if max_train is None or split != "train" else min(len(s), max_train)
        feats = {}
        for m in MODALITIES:
            x, lengths = getattr(s, m)[:n], s.lengths(m)[:n]
            keep = np.arange(x.shape[1])[None, :] < np.maximum(lengths, 1)[:, None]  # (N, T)
            feats[m] = ((x * keep[..., None]).sum(1) / keep.sum(1, keepdims=True)).astype(np.float32)
        out[split] = (feats, s.labels[:n].astype(np.float32))
    # text's 768 dimensions to its 32 leading principal components (of train): an epoch then costs
    # milliseconds, which is what lets 10 repetitions of 5 searches fit the benchmark's wall budget
    x = out["train"][0]["text"]
    mean = x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    for split in out:
        out[split][0]["text"] = ((out[split][0]["text"] - mean) @ vt[:32].T).astype(np.float32)
    return out


def scenario_masks(kind: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per sample and modality, the factor its pooled features are multiplied by: intra erases a share
    r ~ U{0, .1, ..., .9} of the frames (the pooled mean shrinks to 1 - r), inter drops whole
    modalities at rate 0.3 (never all three), mixed does both."""
    f = np.ones((n, 3), np.float32)
    if kind in ("intra", "mixed"):
        f *= 1.0 - rng.integers(0, 10, size=(n, 3)) / 10.0
    if kind in ("inter", "mixed"):
        drop = rng.random((n, 3)) < 0.3
        drop[drop.all(1), rng.integers(0, 3)] = False
        f *= ~drop
    return {m: f[:, i:i + 1] for i, m in enumerate(MODALITIES)}


# ---- the tiny model and its training -----------------------------------------------------------

SPACE = {  # name -> (kind, low, high)
    "lr": ("log", 1e-4, 3e-2),
    "weight_decay": ("log", 1e-6, 1e-1),
    "dropout": ("float", 0.0, 0.6),
    "hidden": ("logint", 8, 128),
    "w_text": ("log", 0.01, 2.0),
    "w_audio": ("log", 0.01, 2.0),
    "w_vision": ("log", 0.01, 2.0),
    "w_mse": ("float", 0.0, 1.0),
    "modality_dropout": ("float", 0.0, 0.5),
}


def suggest(trial) -> dict:
    p = {}
    for k, (kind, lo, hi) in SPACE.items():
        if kind == "logint":
            p[k] = trial.suggest_int(k, lo, hi, log=True)
        else:
            p[k] = trial.suggest_float(k, lo, hi, log=kind == "log")
    return p


class Prune(Exception):
    pass


def train_trial(p: dict, data, kind: str, epochs: int, report) -> float:
    """Train with config p; report(epoch, best_so_far) after each epoch may raise Prune or stop the run
    (returns False). Returns the best validation MAE."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    (xtr, ytr), (xva, yva) = data["train"], data["valid"]
    dims = {m: xtr[m].shape[1] for m in MODALITIES}
    # standardised once, so that an erased (zeroed) feature sits at the training mean
    mu = {m: xtr[m].mean(0, keepdims=True) for m in MODALITIES}
    sd = {m: xtr[m].std(0, keepdims=True) + 1e-5 for m in MODALITIES}
    xtr = {m: torch.from_numpy((xtr[m] - mu[m]) / sd[m]) for m in MODALITIES}
    h = int(p["hidden"])
    enc = nn.ModuleDict({m: nn.Sequential(nn.Linear(dims[m], h), nn.GELU(), nn.Dropout(p["dropout"]))
                         for m in MODALITIES})
    aux = nn.ModuleDict({m: nn.Linear(h, 1) for m in MODALITIES})
    head = nn.Sequential(nn.Linear(3 * h, h), nn.GELU(), nn.Dropout(p["dropout"]), nn.Linear(h, 1))
    params = [*enc.parameters(), *aux.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=p["lr"], weight_decay=p["weight_decay"], foreach=True)
    modules = (enc, aux, head)
    vmask = scenario_masks(kind, len(yva), np.random.default_rng(12345))
    xv = {m: torch.from_numpy((xva[m] - mu[m]) / sd[m] * vmask[m]) for m in MODALITIES}
    yv = torch.from_numpy(yva)
    ytr_t = torch.from_numpy(ytr)
    best = math.inf
    for epoch in range(epochs):
        rng = np.random.default_rng(1000 + epoch)  # the same training masks for every trial
        tmask = scenario_masks(kind, len(ytr), rng)
        keep = (rng.random((len(ytr), 3)) >= p["modality_dropout"]).astype(np.float32)
        xt = {m: xtr[m] * torch.from_numpy(tmask[m] * keep[:, i:i + 1]) for i, m in enumerate(MODALITIES)}
        for mod in modules:
            mod.train()
        order = rng.permutation(len(ytr))
        for start in range(0, len(order), 256):
            idx = torch.from_numpy(order[start:start + 256])
            z = {m: enc[m](xt[m][idx]) for m in MODALITIES}
            pred = head(torch.cat([z[m] for m in MODALITIES], 1)).squeeze(1)
            y = ytr_t[idx]
            task = lambda q: (1 - p["w_mse"]) * (q - y).abs().mean() + p["w_mse"] * ((q - y) ** 2).mean()  # noqa: E731
            loss = task(pred) + sum(p[f"w_{m}"] * task(aux[m](z[m]).squeeze(1)) for m in MODALITIES)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for mod in modules:
            mod.eval()
        with torch.no_grad():
            pv = head(torch.cat([enc[m](xv[m]) for m in MODALITIES], 1)).squeeze(1)
            mae = float((pv - yv).abs().mean())
        best = min(best, mae if math.isfinite(mae) else math.inf)
        if not report(epoch + 1, best):
            break
    return best


# ---- one search -------------------------------------------------------------------------------

def search(method: str, seed: int, data, kind: str, args, warm: list[dict] = ()) -> dict:
    """One search of `method` until the trial-epoch budget is spent. Returns its per-epoch curve
    (cumulative trial-epochs, best-so-far) and the best config."""
    import optuna

    budget = args.trials * args.epochs
    if method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, args.trials // 4),
                                             multivariate=True, group=True, constant_liar=True)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=args.grace, reduction_factor=args.rf)
              if "halving" in method else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    for w in warm:
        study.enqueue_trial(w)
    spent, best = 0, math.inf
    cost, curve = [], []
    n_trials = 0
    while spent < budget:
        batch = [study.ask() for _ in range(args.batch)]
        for trial in batch:
            if spent >= budget:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)  # never started: no result
                continue
            p = suggest(trial)
            n_trials += 1

            def report(epoch, value, trial=trial):
                nonlocal spent, best
                spent += 1
                best = min(best, value)
                cost.append(spent)
                curve.append(best)
                trial.report(value, epoch)
                if trial.should_prune():
                    raise Prune
                return spent < budget

            try:
                value = train_trial(p, data, kind, args.epochs, report)
                study.tell(trial, value)
            except Prune:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    top = min(done, key=lambda t: t.value) if done else None
    return {"cost": cost, "best": curve, "n_trials": n_trials, "final_best": best,
            "best_params": dict(top.params) if top else {}}


def epochs_to(cost, best, target) -> float:
    for c, b in zip(cost, best):
        if b <= target + 1e-12:
            return float(c)
    return math.inf


def analyse(runs: dict[str, list[dict]], budget: int, n_boot: int = 4000, seed: int = 0) -> dict:
    """Per method: trial-epochs to reach random search's median final best, as a share of the budget.

    Random search reaches its own median final best at the end of its budget in the median
    repetition, so the budget is random's figure, and ratio = median over repetitions of a method's
    trial-epochs to the target / budget. The 95 % interval is a percentile bootstrap that resamples
    the repetitions of random (which moves the target) and of the method, independently (their
    seeds are unrelated). Medians by the inverted CDF (no interpolation), so a repetition that never
    reached the target (inf) stays a miss instead of turning the median into NaN."""
    med = lambda a: float(np.quantile(np.asarray(a, float), 0.5, method="inverted_cdf"))  # noqa: E731
    finals = np.array([x["final_best"] for x in runs["random"]])
    target = med(finals)
    rng = np.random.default_rng(seed)
    out = {}
    for m, xs in runs.items():
        to = np.array([epochs_to(x["cost"], x["best"], target) for x in xs])
        boot = []
        for _ in range(n_boot):
            t = med(finals[rng.integers(0, len(finals), len(finals))])
            pick = rng.integers(0, len(xs), len(xs))
            boot.append(med([epochs_to(xs[i]["cost"], xs[i]["best"], t) for i in pick]) / budget)
        lo, hi = np.quantile(boot, [0.025, 0.975], method="inverted_cdf")
        out[m] = {"reached_target": int(np.isfinite(to).sum()), "reps": len(xs),
                  "epochs_to_target": [None if not math.isfinite(v) else v for v in to],
                  "median_epochs_to_target": med(to), "ratio_to_budget": med(to) / budget,
                  "ratio_ci95": [float(lo), float(hi)],
                  "median_final_best": float(np.median([x["final_best"] for x in xs])),
                  "mean_trials": float(np.mean([x["n_trials"] for x in xs]))}
    return {"target_valid_mae": target, "methods": out}


def print_summary(res: dict, budget: int, reps: int) -> None:
    print(f"\ntarget: random search's median final best valid MAE {res['target_valid_mae']:.4f} (intra); "
          f"budget {budget} trial-epochs (= random's figure); {reps} repetitions")
    for m, s in res["methods"].items():
        lo, hi = s["ratio_ci95"]
        print(f"  {m:17s} reached {s['reached_target']:2d}/{reps}, median trial-epochs to target "
              f"{s['median_epochs_to_target']:.0f} = {s['ratio_to_budget']:.2f} of random's [{lo:.2f}, {hi:.2f}], "
              f"median final best {s['median_final_best']:.4f}, {s['mean_trials']:.1f} trials")


def plot(curves: dict[str, list[tuple[list, list]]], floor: float, budget: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.arange(1, budget + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, runs in curves.items():
        reg = []
        for cost, best in runs:
            idx = np.searchsorted(np.asarray(cost), grid, side="right") - 1  # last epoch at or before g
            b = np.where(idx >= 0, np.asarray(best)[np.maximum(idx, 0)], np.nan)
            reg.append(b - floor)
        reg = np.asarray(reg)
        q1, q2, q3 = np.nanquantile(reg, [0.25, 0.5, 0.75], axis=0)
        ax.plot(grid, q2, label=method)
        ax.fill_between(grid, q1, q3, alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("trial-epochs")
    ax.set_ylabel("regret: best-so-far valid MAE - best found by any run")
    ax.set_title(f"median and quartiles over {len(next(iter(curves.values())))} repetitions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_hpo.json")
    ap.add_argument("--plot", default="bench_hpo.png")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--trials", type=int, default=12, help="trials of random / TPE (budget = trials x epochs)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--grace", type=int, default=2, help="halving: judged epochs before a trial can be stopped")
    ap.add_argument("--rf", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2, help="trials asked at a time (the study's concurrency)")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--from-json", default=None, help="recompute the figures and the plot from a saved --out")
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        runs, budget = saved["runs"], int(saved["budget_trial_epochs"])
        res = analyse(runs, budget)
        floor = min(min(x["best"]) for xs in runs.values() for x in xs) - 1e-4
        plot({m: [(x["cost"], x["best"]) for x in xs] for m, xs in runs.items()}, floor, budget, Path(args.plot))
        print_summary(res, budget, len(runs["random"]))
        return 0
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    data = pooled_data(args.max_train)
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    sources = []
    for r in range(args.reps):
        t = time.perf_counter()
        src = search("tpe+halving", 10_000 + r, data, "mixed", args)  # the warm start's source
        sources.append(src["final_best"])
        for m in METHODS:
            warm = [src["best_params"]] if m == "tpe+halving+warm" else []
            runs[m].append(search(m, r, data, "intra", args, warm))
        print(f"[bench_hpo] rep {r}: " + ", ".join(f"{m} {runs[m][-1]['final_best']:.4f} ({runs[m][-1]['n_trials']} trials)"
                                                  for m in METHODS) + f" [{time.perf_counter() - t:.0f}s]", flush=True)

    budget = args.trials * args.epochs
    res = analyse(runs, budget)
    floor = min(min(x["best"]) for m in METHODS for x in runs[m]) - 1e-4
    plot({m: [(x["cost"], x["best"]) for x in runs[m]] for m in METHODS}, floor, budget, Path(args.plot))
    report = {"args": vars(args), "budget_trial_epochs": budget, **res, "best_found": floor + 1e-4,
              "runs": runs, "warm_source_best": sources, "wall_s": round(time.perf_counter() - t_all, 1)}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print_summary(res, budget, args.reps)
    print(f"wrote {args.out}, {args.plot} ({report['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The one training loop. It runs as it is without Ray, as a Ray Train worker (DDP), and inside a
Ray Tune trial; what differs is only the Session it reports to (raymsa/train/session.py).

Per epoch: draw the scenario's training masks (seeded by (seed, epoch)), follow the model's stage
schedule, train, evaluate on validation under the scenario's fixed grid, keep the best model by the
validation objective (never test), checkpoint, maybe stop early. Only epochs of the model's final
stage are judged: an earlier stage's forward is not the model's, so its epochs report NaN as their
objective, can be neither selected nor pruned on (ASHA), and do not count towards patience.
The model gets `batch.split(scenario.knowledge)`: its input, and in training the loss targets. At the end the selected model is
evaluated on test, and on every scenario the caller asks for.

Where the time goes: `timing` (returned in RunResult, reported each epoch as time/<part>_s so far in
this process; a resumed run counts from its restart) adds up the seconds of the loop's parts: train
(the steps), valid, checkpoint (state saved and reported), final_eval (test and the caller's
scenarios) and diagnostics (their share of it). What the loop does not time (data, model, optimiser
set-up) the search layer counts as trial start-up.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from raymsa.data import MMSAData
from raymsa.metrics import METRIC_DIRECTION, mmsa_metrics
from raymsa.missing import ScenarioConfig, apply_missingness, level_key, split_seed, train_missingness
from raymsa.models import DataSpec, MSAModel, build_model
from raymsa.train.batches import SplitTensors, shard_indices
from raymsa.train.config import TrainConfig
from raymsa.train.evaluate import GridEvaluator, GridOutputs, grid_mean, is_better, noise_scale
from raymsa.train.session import LocalSession, Session, scratch_dir

REPORTED_METRICS = ("MAE", "Corr", "Mult_acc_7", "Mult_acc_5", "Non0_acc_2", "Non0_F1_score",
                    "Has0_acc_2", "Has0_F1_score", "Mult_acc_2", "Mult_acc_3", "F1_score")
EVAL_COLUMNS = ("model", "scenario", "eval_scenario", "level", "seed", "split", "metric", "value", "config_id",
                "knowledge")


TIMED_PARTS = ("train", "valid", "checkpoint", "final_eval", "diagnostics")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss: stop rather than train on garbage."""


@dataclass
class FinalEval:
    """Where and under which scenarios to evaluate the selected model at the end of a run."""

    scenarios: list[ScenarioConfig]
    out_csv: Path
    meta: dict[str, Any]  # model, scenario (trained for), seed, config_id
    split: str = "test"


@dataclass
class RunResult:
    best_epoch: int
    best_objective: float
    valid: dict[str, dict[str, float]]  # level -> metrics of the selected model
    test: dict[str, dict[str, float]] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    diagnostics: dict[str, dict[str, float]] | None = None  # level -> diag/ metrics of the selected model on test
    stop_reason: str = "cap"  # 'plateau' (patience ran out) or 'cap' (train.epochs reached)
    timing: dict[str, float] = field(default_factory=dict)  # part -> seconds (TIMED_PARTS)


STOP_PLATEAU, STOP_CAP = "plateau", "cap"


def stage_for_epoch(stages, epoch: int, epochs: int) -> str:
    """Stages take consecutive shares of the epochs; each gets at least one when there is room, and
    the last epoch always belongs to the last stage (the only one selection may pick)."""
    if epoch >= epochs - 1:
        return stages[-1].name
    bounds, acc = [], 0.0
    for s in stages:
        acc += s.fraction
        bounds.append(acc)
    total = bounds[-1]
    for i, s in enumerate(stages):
        end = round(bounds[i] / total * epochs)
        end = max(end, min(i + 1, epochs))
        if epoch < end:
            return s.name
    return stages[-1].name


def _lr_lambda(total_steps: int, warmup_steps: int, cosine: bool):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if not cosine:
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


class Schedule:
    """Linear warm-up per step, then either cosine decay to 0 at the cap, or a constant LR that
    torch's ReduceLROnPlateau lowers when the validation objective stalls. The warm-up's LambdaLR
    sets the LR absolutely, so under 'plateau' it stops stepping once warm-up ends and the plateau
    scheduler's multiplications stick."""

    def __init__(self, optimizer: torch.optim.Optimizer, tc, steps_per_epoch: int, maximize: bool):
        total = steps_per_epoch * tc.epochs
        self.cosine = tc.schedule == "cosine"
        self.warmup_steps = max(1, int(tc.warmup_fraction * total))
        self.step_count = 0
        self.warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, self.warmup_steps, self.cosine))
        self.plateau = None if self.cosine else torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if maximize else "min", factor=tc.lr_factor, patience=tc.lr_patience,
            threshold=tc.min_delta, threshold_mode="abs", min_lr=tc.lr * tc.min_lr_fraction)

    def step(self) -> None:
        if self.cosine or self.step_count < self.warmup_steps:
            self.warmup.step()
        self.step_count += 1

    def end_epoch(self, objective: float | None) -> None:
        """After a judged epoch's validation (objective), the plateau scheduler's look."""
        if self.plateau is not None and objective is not None and math.isfinite(objective):
            self.plateau.step(objective)

    def lr(self) -> float:
        return self.warmup.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"warmup": self.warmup.state_dict(), "step_count": self.step_count,
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, st: dict) -> None:
        self.warmup.load_state_dict(st["warmup"])
        self.step_count = st["step_count"]
        if self.plateau is not None and st.get("plateau") is not None:
            self.plateau.load_state_dict(st["plateau"])


def _device(cfg: TrainConfig, session: Session) -> torch.device:
    if not cfg.resources.use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("resources.use_gpu is true but no CUDA device is visible to this worker")
    if session.world_size > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cuda", 0)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dataset_name(cfg: TrainConfig, data: MMSAData) -> str:
    return cfg.data.dataset or data.dataset


def run(cfg: TrainConfig, data: MMSAData, session: Session | None = None, *,
        final_eval: FinalEval | None = None, verbose: bool = True, timing: dict[str, float] | None = None) -> RunResult:
    """`timing`: the caller's dict to add the parts' seconds to (it then holds them also when the run
    is stopped or fails midway); a new one otherwise."""
    timing = timing if timing is not None else {}
    for part in TIMED_PARTS:
        timing.setdefault(part, 0.0)
    session = session or LocalSession("results/train", resume=False)
    device = _device(cfg, session)
    torch.set_num_threads(cfg.train.threads or max(1, int(cfg.resources.cpus_per_worker)))
    _seed_everything(cfg.train.seed)
    tc, sc = cfg.train, cfg.scenario
    ds_name = dataset_name(cfg, data)
    amp = cfg.resources.amp and device.type == "cuda"
    main = session.is_main
    distributed = session.world_size > 1

    # ---- data ---------------------------------------------------------------------------
    train_t = SplitTensors.from_split(data["train"], cfg.data.max_train)
    valid_t = SplitTensors.from_split(data["valid"], cfg.data.max_eval)
    mask_seed = tc.eval_mask_seed if tc.eval_mask_seed is not None else tc.seed
    scale = noise_scale(train_t) if sc.kind == "noise" else None
    validator = GridEvaluator(valid_t, sc, split_seed(mask_seed, "valid"), scale=scale) if main else None

    # ---- model, optimiser, schedule -----------------------------------------------------
    core: MSAModel = build_model(cfg.model.name, cfg.model, spec=DataSpec.from_data(data, ds_name)).to(device)
    model: nn.Module = core
    if distributed:
        # some parameters sit idle in some stages / ablations, hence find_unused_parameters
        model = nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(core.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = len(shard_indices(len(train_t), tc.batch_size, seed=tc.seed, epoch=0,
                                        rank=session.rank, world=session.world_size))
    scheduler = Schedule(optimizer, tc, steps_per_epoch, maximize=METRIC_DIRECTION[tc.select_metric])
    stages = core.stages()
    ema = make_ema(core, tc.ema_epochs, steps_per_epoch)
    # what validation, selection and the final evaluation see: the averaged weights when averaging
    judged_model: MSAModel = ema.module if ema is not None else core

    # ---- resume -------------------------------------------------------------------------
    # best_obj: the selected checkpoint's objective; patience_ref: the last objective that beat the
    # one before it by more than min_delta (what patience counts from)
    start_epoch, best_epoch, best_obj, bad_epochs, patience_ref = 0, -1, None, 0, None
    best_stage = stages[-1].name  # the stage the selected weights were trained in: their forward path
    best_valid: dict[str, dict[str, float]] = {}
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = []
    with session.restored_checkpoint() as ckpt_dir:
        if ckpt_dir is not None:
            st = torch.load(Path(ckpt_dir) / "state.pt", map_location=device, weights_only=True)
            core.load_state_dict(st["model"])
            optimizer.load_state_dict(st["optimizer"])
            scheduler.load_state_dict(st["scheduler"])
            if ema is not None:
                if st.get("ema") is None:
                    raise RuntimeError(f"{ckpt_dir}: checkpoint has no averaged weights but train.ema_epochs "
                                       f"is {tc.ema_epochs}; resume with the config it was trained with")
                ema.load_state_dict(st["ema"])
            torch.set_rng_state(st["torch_rng"])
            start_epoch, best_epoch, bad_epochs = st["epoch"], st["best_epoch"], st["bad_epochs"]
            best_obj, best_stage = st["best_objective"], st["best_stage"]
            patience_ref = st.get("patience_ref", best_obj)
            best_state = st["best_model"]
            best_valid = json.loads(st["best_valid"])
            history = json.loads(st["history"])
            if verbose and main:
                print(f"[raymsa] resumed from checkpoint after epoch {start_epoch}", flush=True)

    writer = None
    if main and session.log_dir is not None:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(session.log_dir))

    needs_complete = core.needs_complete
    train_loss_fn = F.l1_loss if tc.task_loss == "l1" else F.mse_loss
    select = tc.select_metric

    for epoch in range(start_epoch, tc.epochs):
        t0 = time.perf_counter()
        stage = stage_for_epoch(stages, epoch, tc.epochs)
        core.set_stage(stage)
        if ema is not None:
            if epoch > 0 and stage != stage_for_epoch(stages, epoch - 1, tc.epochs):
                # a new stage trains another forward path: its average starts from its first step
                ema.n_averaged.zero_()
            ema.module.set_stage(stage)
        weights = core.loss_weights()
        model.train()
        # masks for the whole split, redrawn each epoch from (seed, epoch): every rank draws the
        # same ones and uses its own shard of them
        miss = train_missingness(train_t.valid, sc, tc.seed, epoch)
        if scale is not None:
            miss = dataclasses.replace(miss, noise_scale=scale)
        sums: dict[str, float] = {}
        n_seen = 0
        for step, idx in enumerate(shard_indices(len(train_t), tc.batch_size, seed=tc.seed, epoch=epoch,
                                                 rank=session.rank, world=session.world_size)):
            batch = apply_missingness(train_t.batch(idx), miss, idx)
            if not needs_complete:
                batch.complete = None
            inputs, targets = batch.to(device, non_blocking=True).split(sc.knowledge)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(inputs, targets)
                task = train_loss_fn(out["pred"].float(), targets.labels)
                if "pred_complete" in out:
                    out["losses"]["task_complete"] = train_loss_fn(out["pred_complete"].float(), targets.labels)
                total = task
                for name, value in out["losses"].items():
                    w = weights.get(name, 0.0)
                    if w:
                        total = total + w * value.float()
            if not torch.isfinite(total):
                bad = {k: v.item() for k, v in out["losses"].items() if not torch.isfinite(v)}
                raise NonFiniteLossError(
                    f"epoch {epoch + 1} step {step + 1}: total loss is {total.item()} "
                    f"(task {task.item():.4g}; non-finite terms: {bad or 'none'}); stopping the run")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if tc.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(core.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(core)
            b = inputs.size
            n_seen += b
            sums["loss"] = sums.get("loss", 0.0) + total.item() * b
            sums["task"] = sums.get("task", 0.0) + task.item() * b
            for name, value in out["losses"].items():
                sums[name] = sums.get(name, 0.0) + value.item() * b
        train_time = time.perf_counter() - t0
        timing["train"] += train_time
        losses = {k: v / max(1, n_seen) for k, v in sums.items()}

        # ---- validation (rank 0), decision shared with every rank ---------------------------
        obj = math.nan
        judged = stage == stages[-1].name  # an earlier stage is never selected nor pruned on
        valid: dict[str, dict[str, float]] = {}
        if ema is not None:
            copy_buffers(ema.module, core)  # once per epoch: only validation and checkpoints read them
        if main:
            t_valid = time.perf_counter()
            valid = validator.evaluate(judged_model, ds_name, tc.eval_batch_size, device, amp)
            timing["valid"] += time.perf_counter() - t_valid
            if judged:
                obj = grid_mean(valid, select)
        if distributed:
            t = torch.tensor([obj], dtype=torch.float64, device=device)
            torch.distributed.broadcast(t, src=0)
            obj = float(t.item())
        improved = judged and is_better(select, obj, best_obj)
        if improved:
            best_obj, best_epoch = obj, epoch
            best_valid, best_stage = valid, stage
            if main:
                best_state = {k: v.detach().clone() for k, v in judged_model.state_dict().items()}
        if judged:
            bound = None if patience_ref is None else (
                patience_ref + tc.min_delta if METRIC_DIRECTION[select] else patience_ref - tc.min_delta)
            if is_better(select, obj, bound):
                patience_ref, bad_epochs = obj, 0
            else:
                bad_epochs += 1
            scheduler.end_epoch(obj)
        stop = tc.patience is not None and bad_epochs >= tc.patience

        metrics: dict[str, Any] = {
            "epoch": epoch + 1, "stage": stage, "lr": scheduler.lr(),
            "objective": obj, "best_objective": best_obj if best_obj is not None else math.nan,
            "best_epoch": best_epoch + 1, "train_time_s": train_time,
            "train_samples_per_s": n_seen * session.world_size / max(train_time, 1e-9),
        }
        metrics.update({f"loss/{k}": v for k, v in losses.items()})
        metrics.update({f"time/{k}_s": v for k, v in timing.items()})  # so far (this epoch's checkpoint not yet)
        if main:
            for m in REPORTED_METRICS:
                if valid and m in next(iter(valid.values())):
                    metrics[f"valid/{m}"] = grid_mean(valid, m)
            for lv, res in valid.items():
                metrics[f"valid/{select}@{lv}"] = res[select]
        history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})

        if writer is not None:
            for k, v in metrics.items():
                # a non-final stage has no objective (NaN): nothing to plot
                if isinstance(v, (int, float)) and k != "epoch" and not math.isnan(v):
                    writer.add_scalar(k, v, epoch + 1)
            writer.flush()
        if verbose and main:
            terms = " ".join(f"{k} {v:.4g}" for k, v in losses.items() if k not in ("loss",))
            print(f"epoch {epoch + 1:>3}/{tc.epochs} [{stage}] loss {losses.get('loss', math.nan):.4f} ({terms}) | "
                  f"valid {select} {obj:.4f}{' *' if improved else '  '} | best ep {best_epoch + 1} | "
                  f"{train_time:.1f}s", flush=True)

        t_ckpt = time.perf_counter()
        with scratch_dir() as d:
            ckpt = None
            if main:
                torch.save({
                    "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "epoch": epoch + 1, "best_epoch": best_epoch, "best_objective": best_obj,
                    "bad_epochs": bad_epochs, "patience_ref": patience_ref,
                    "best_model": best_state, "best_stage": best_stage,
                    "best_valid": json.dumps(best_valid), "history": json.dumps(history),
                    "config": json.dumps(cfg.to_dict()),
                }, d / "state.pt")
                ckpt = d
            session.report(metrics, ckpt)
        timing["checkpoint"] += time.perf_counter() - t_ckpt
        if stop:
            if verbose and main:
                print(f"[raymsa] early stop: valid {select} has not improved by more than {tc.min_delta:g} "
                      f"for {tc.patience} judged epochs", flush=True)
            break

    if writer is not None:
        writer.close()
    stop_reason = STOP_PLATEAU if tc.patience is not None and bad_epochs >= tc.patience else STOP_CAP

    # ---- the selected model on test (rank 0) ----------------------------------------------
    test = diagnostics = None
    if main and best_state is not None:
        t_final = time.perf_counter()
        diag_s = 0.0
        core.load_state_dict(best_state)
        core.set_stage(best_stage)
        reuse: dict[str, GridOutputs] = {}
        if tc.eval_test:
            test_t = SplitTensors.from_split(data["test"], cfg.data.max_eval)
            tester = GridEvaluator(test_t, sc, split_seed(mask_seed, "test"), scale=scale)
            # one pass: predictions and diagnostics, which the final evaluation reuses for this scenario
            outputs = tester.run(core, tc.eval_batch_size, device, amp, diagnose=True)
            diag_s += outputs.diagnose_s
            labels = test_t.labels.numpy()
            test = {lv: mmsa_metrics(pred, labels, ds_name) for lv, pred in outputs.preds.items()}
            reuse[sc.label] = outputs
            if verbose:
                print(f"[raymsa] test ({sc.label}, selected epoch {best_epoch + 1}): "
                      + " ".join(f"{m} {grid_mean(test, m):.4f}" for m in ("MAE", "Corr", "Mult_acc_7")
                                 if m in next(iter(test.values()))), flush=True)
            diagnostics = outputs.diagnostics
        if final_eval is not None:
            # the test pass above is this scenario's final evaluation when it asks for the same one
            same = final_eval.split == "test" and any(s_ == sc for s_ in final_eval.scenarios)
            diag_s += write_final_eval(core, data, cfg, final_eval, device, amp, mask_seed, train_t,
                                       reuse=reuse if same else None, record={
                "epochs_run": len(history), "cap": tc.epochs, "best_epoch": best_epoch + 1,
                "stop_reason": stop_reason, "patience": tc.patience, "min_delta": tc.min_delta,
                "schedule": tc.schedule,
                # the run's seconds in the loop up to here (train, valid, checkpoints, test pass): what
                # one more seed of this run costs, for the planning command
                "seconds": sum(timing.values()) + time.perf_counter() - t_final,
                "history": [{k: h[k] for k in ("epoch", "stage", "lr", "objective") if k in h} for h in history]})
        timing["diagnostics"] += diag_s
        timing["final_eval"] += time.perf_counter() - t_final - diag_s

    return RunResult(best_epoch=best_epoch + 1, best_objective=best_obj if best_obj is not None else math.nan,
                     valid=best_valid, test=test, history=history, epochs_run=len(history),
                     diagnostics=diagnostics if test is not None else None, stop_reason=stop_reason,
                     timing=dict(timing))


def make_ema(core: nn.Module, ema_epochs: float | None, steps_per_epoch: int) -> AveragedModel | None:
    """The exponential moving average of core's parameters (train.ema_epochs), or None."""
    if ema_epochs is None:
        return None
    decay = 1.0 - 1.0 / max(1.0, ema_epochs * steps_per_epoch)
    # buffers are not averaged: they are constants, masks or the training-only running moments of a
    # loss (losses.LabelReadout), which copy_buffers brings over so the averaged model's diagnostics see them
    return AveragedModel(core, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


@torch.no_grad()
def copy_buffers(dst: nn.Module, src: nn.Module) -> None:
    for a, b in zip(dst.buffers(), src.buffers(), strict=True):
        a.copy_(b)


def write_final_eval(model: MSAModel, data: MMSAData, cfg: TrainConfig, fe: FinalEval, device: torch.device,
                     amp: bool, mask_seed: int, train_t: SplitTensors,
                     reuse: dict[str, GridOutputs] | None = None, record: dict[str, Any] | None = None) -> float:
    """The selected model under every requested scenario: preds.npz, then eval.csv, both atomic.

    The predictions are made once per (eval scenario, level); from them come the tidy metric rows
    (EVAL_COLUMNS) and preds.npz, which the report resamples for its paired bootstrap intervals
    (arrays: eval_scenario (K,) str, level (K,) str, pred (K, N) float32, labels (N,), index (N,) =
    position of each sample in the split; no pickled objects, np.load(allow_pickle=False)). preds.npz
    is written first: eval.csv marks a finished run for --resume, so a run with eval.csv has both.
    Each level also gets the model's diagnostic rows (metric names under 'diag/': integrity-estimation
    error and bias per modality, dominant-modality shares, collapse cosines; GridEvaluator.diagnose).
    `knowledge` is the arm of the eval scenario. `reuse`: outputs of a pass already made on this split
    with the same masks, by scenario label (the run's own test pass). `record` (how training went:
    epochs run, the cap, the selected epoch, why it stopped) goes to run.json, also before eval.csv.
    Returns the seconds spent on diagnostics."""
    tensors = SplitTensors.from_split(data[fe.split], cfg.data.max_eval)
    labels = tensors.labels.numpy()
    dataset = dataset_name(cfg, data)
    bs = cfg.train.eval_batch_size
    rows, names, levels, preds = [], [], [], []
    diag_s = 0.0
    was_training = model.training
    model.eval()
    try:
        for scenario in fe.scenarios:
            outputs = (reuse or {}).get(scenario.label)
            if outputs is None:
                scale = noise_scale(train_t) if scenario.kind == "noise" else None
                grid = GridEvaluator(tensors, scenario, split_seed(mask_seed, fe.split), scale=scale)
                outputs = grid.run(model, bs, device, amp, diagnose=True)
                diag_s += outputs.diagnose_s
            diags = outputs.diagnostics
            for level, pred in outputs.preds.items():  # pred (N,)
                names.append(scenario.label)
                levels.append(level)
                preds.append(pred)
                for metric, value in {**mmsa_metrics(pred, labels, dataset), **diags.get(level, {})}.items():
                    rows.append({**fe.meta, "eval_scenario": scenario.label, "level": level_key(level),
                                 "split": fe.split, "metric": metric, "value": value,
                                 "knowledge": scenario.knowledge})
    finally:
        model.train(was_training)
    fe.out_csv.parent.mkdir(parents=True, exist_ok=True)
    out = fe.out_csv.with_name("preds.npz")
    tmp = out.with_name("preds.npz.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, eval_scenario=np.array(names, dtype=str), level=np.array(levels, dtype=str),
                 pred=np.stack(preds).astype(np.float32), labels=labels.astype(np.float32),
                 index=np.arange(len(tensors), dtype=np.int64), split=np.array(fe.split))
    os.replace(tmp, out)
    if record is not None:
        tmp = fe.out_csv.with_name("run.json.tmp")
        tmp.write_text(json.dumps(record, indent=1, default=float))
        os.replace(tmp, fe.out_csv.with_name("run.json"))
    tmp = fe.out_csv.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EVAL_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, fe.out_csv)
    return diag_s

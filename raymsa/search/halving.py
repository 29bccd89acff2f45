"""Successive halving on epochs whose stop decisions do not depend on the machine's timing.

ASHA (Tune's AsyncHyperBandScheduler) stops a trial at a rung when it is below the top 1/rf of the
values *recorded at that rung so far*; which trials have got there first depends on timing as soon
as two trials run at once, so two runs of one search stop different trials. Here the searcher hands
out trials in batches (ConcurrencyLimiter(batch=True): batch b starts only when batch b-1 has
finished), and a trial of batch b is compared at a rung only with the trials of batches < b, all
finished by then. Every decision is then a function of the trials' results alone. Within a batch no
trial stops another, so the first batch always runs to max_t (as ASHA's first trial does).

Rungs count *judged* epochs: epochs whose `objective` is finite. A two-stage model (Senti-iFusion)
reports NaN in its completion stage, whose length is itself searched (stage1_fraction); counted in
raw epochs, its trials would meet a rung at different points of their judged phase, and one with a
long first stage would be judged on its first judged epoch, where every model still sits near the
constant predictor. Counted in judged epochs, every trial gets `grace_period` judged epochs first
and is compared with others at the same count.
"""

from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler


class BatchedHalving(FIFOScheduler):
    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float,
                 batch_size: int, judged_attr: str = "objective", epoch_attr: str = "epoch"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self._metric, self._mode = metric, mode
        self._judged_attr, self._epoch_attr = judged_attr, epoch_attr
        self._judged: dict[str, set[int]] = {}  # trial id -> the epochs with a finite objective
        self._sign = 1.0 if mode == "max" else -1.0
        self.rf, self.batch_size = reduction_factor, max(1, batch_size)
        # the rungs ASHA would use: grace * rf^k <= max_t
        n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1) if max_t >= grace_period else 0
        self.milestones = sorted({int(round(grace_period * reduction_factor ** k)) for k in range(n)})
        self._order: dict[str, int] = {}  # trial id -> creation index (the searcher's batch order)
        self._rungs: dict[int, dict[int, float]] = {m: {} for m in self.milestones}  # milestone -> index -> value
        self._decided: dict[tuple[str, int], str] = {}
        self.stopped: dict[str, int] = {}  # trial id -> epoch it was stopped at

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are fixed at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        self._order.setdefault(trial.trial_id, len(self._order))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        obj, v = result.get(self._judged_attr), result.get(self._metric)
        if obj is None or v is None or not math.isfinite(float(obj)):
            return TrialScheduler.CONTINUE  # an unjudged epoch (earlier stage): never a rung
        # a set: a trial retried from its checkpoint reports some epochs twice
        seen = self._judged.setdefault(trial.trial_id, set())
        seen.add(int(result.get(self._epoch_attr, len(seen) + 1)))
        t = len(seen)
        if t not in self._rungs:
            return TrialScheduler.CONTINUE
        key = (trial.trial_id, t)
        if key in self._decided:  # a retried trial reporting its rung again: the same decision
            return self._decided[key]
        idx = self._order[trial.trial_id]
        batch = idx // self.batch_size
        recorded = self._rungs[t]
        prior = [x for j, x in recorded.items() if j // self.batch_size < batch]
        value = self._sign * float(v)
        action = TrialScheduler.CONTINUE
        if prior and math.isfinite(value):
            cutoff = np.nanpercentile(prior, (1 - 1 / self.rf) * 100)
            if value < cutoff:
                action = TrialScheduler.STOP
                self.stopped[trial.trial_id] = int(result.get(self._epoch_attr, t))
        recorded[idx] = value if math.isfinite(value) else -math.inf
        self._decided[key] = action
        return action

    def debug_string(self) -> str:
        return (f"BatchedHalving: rungs {self.milestones}, batches of {self.batch_size}, "
                f"{len(self.stopped)} stopped")

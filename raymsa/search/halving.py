"""Successive halving on epochs whose stop decisions do not depend on the machine's timing.

ASHA (Tune's AsyncHyperBandScheduler) stops a trial at a rung when it is below the top 1/rf of the
values *recorded at that rung so far*; which trials have got there first depends on timing as soon
as two trials run at once, so two runs of one search stop different trials. Here the searcher hands
out trials in batches (ConcurrencyLimiter(batch=True): batch b starts only when batch b-1 has
finished), and a trial of batch b is compared at a rung only with the trials of batches < b, all
finished by then. Every decision is then a function of the trials' results alone. Within a batch no
trial stops another, so the first batch always runs to max_t (as ASHA's first trial does).
"""

from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler


class BatchedHalving(FIFOScheduler):
    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float,
                 batch_size: int, time_attr: str = "training_iteration"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self._metric, self._mode, self._time_attr = metric, mode, time_attr
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
        t, v = result.get(self._time_attr), result.get(self._metric)
        if t not in self._rungs or v is None:
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
                self.stopped[trial.trial_id] = int(t)
        recorded[idx] = value if math.isfinite(value) else -math.inf
        self._decided[key] = action
        return action

    def debug_string(self) -> str:
        return (f"BatchedHalving: rungs {self.milestones}, batches of {self.batch_size}, "
                f"{len(self.stopped)} stopped")

"""Missingness: which frames and modalities a model sees, for evaluation grids and training.

Stage two of data -> missing -> models -> train. Masks are made for a whole split at once, seeded
and nested across levels, then sliced per batch by sample index:

    miss = eval_missingness(valid, scenario, level=0.5, seed=1111)   # once per split and level
    batch = apply_missingness(batch, miss, batch.index)               # per batch

Modules: scenarios (the YAML-facing ScenarioConfig), masks (mask builders), apply (per batch),
rng (counter-based random numbers). docs/missingness.md describes every scenario.
"""

from raymsa.missing.apply import apply_missingness, feature_std
from raymsa.missing.masks import Missingness, eval_missingness, missing_stats, split_seed, train_missingness
from raymsa.missing.scenarios import INTER_MAX_RATE, KINDS, ScenarioConfig, default_levels, level_key

__all__ = [
    "INTER_MAX_RATE",
    "KINDS",
    "Missingness",
    "ScenarioConfig",
    "apply_missingness",
    "default_levels",
    "eval_missingness",
    "feature_std",
    "level_key",
    "missing_stats",
    "split_seed",
    "train_missingness",
]

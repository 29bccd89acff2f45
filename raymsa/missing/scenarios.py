"""Missingness scenarios as study YAML describes them: one kind, an evaluation grid, a training sampler.

A scenario is parsed once into `ScenarioConfig`; everything below takes the typed object.
See docs/missingness.md for the algorithm behind each kind.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from raymsa.batch import SUBSETS
from raymsa.config import StrictModel

KINDS: tuple[str, ...] = ("intra", "inter", "subset", "mixed", "burst", "noise", "imbalanced")
Kind = Literal["intra", "inter", "subset", "mixed", "burst", "noise", "imbalanced"]
# imbalanced: the default per-modality scale of the level (MissBench-style: audio the fragile one)
DEFAULT_MODALITY_SCALE: dict[str, float] = {"text": 0.25, "audio": 1.0, "vision": 0.5}

# Never-all-missing caps the whole-modality missing rate: at most 2 of 3 modalities per sample.
INTER_MAX_RATE = 2.0 / 3.0
_EPS = 1e-9  # slack for 2/3 written as 0.6666666666666666 and the like


def _grid(stop: int) -> list[float]:
    return [round(0.1 * i, 10) for i in range(stop + 1)]


def level_key(level: float | str) -> str:
    """A level as stored in results: '0.3', 'la'."""
    return level if isinstance(level, str) else f"{float(level):g}"


def default_levels(kind: str) -> list[float] | list[str]:
    """The evaluation grid used when a scenario gives no `levels`."""
    if kind == "subset":
        return list(SUBSETS)
    if kind == "inter":
        return _grid(6)  # 0.0 ... 0.6
    return _grid(9)  # 0.0 ... 0.9 (intra, mixed, burst, noise, imbalanced)


def canonical_subset(s: str) -> str:
    """'vl' -> 'lv': letters in 'lav' order; anything else is returned unchanged (and rejected later)."""
    if isinstance(s, str) and s and set(s) <= set("lav") and len(set(s)) == len(s):
        return "".join(c for c in "lav" if c in s)
    return s


class ScenarioConfig(StrictModel):
    """One missingness scenario (a study YAML `scenarios:` entry).

    `levels` is the evaluation grid: missing rates for intra/inter/mixed/burst, noise std (relative
    to each feature's std) for noise, modality subsets ('l', 'la', ...) for subset. Left out (or set
    to None), it is filled with the kind's default grid, so a parsed scenario always has explicit
    levels (and the resolved config saved with results shows them).
    """

    name: str | None = None  # label in reports; defaults to kind
    kind: Kind
    # what the model is told: 'unknown' (the field's protocol: corrupted input and padding masks
    # only) or 'known' (the observation masks too: the mask-aware oracle arm)
    knowledge: Literal["unknown", "known"] = "unknown"
    levels: list[float] | list[str] | None = Field(default=None, validate_default=True)  # None -> default
    mixed_inter_ratio: float = 0.5  # mixed level r = whole-modality rate ratio*r + frame rate r
    # imbalanced level r: modality m is missing (whole) in a sample with probability r * modality_scale[m]
    modality_scale: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MODALITY_SCALE))
    # training sampler: rates ~ U(0, train_max_rate) (default validated: mixed checks it against the ratio)
    train_max_rate: float = Field(default=1.0, validate_default=True)
    train_complete_fraction: float = 0.5  # share of training samples left complete each epoch

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must be a non-empty string")
        return v

    @field_validator("levels", mode="before")
    @classmethod
    def _canonical_subsets(cls, v: Any, info: ValidationInfo) -> Any:
        if info.data.get("kind") == "subset" and isinstance(v, list):
            return [canonical_subset(s) for s in v]
        return v

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, v: list | None, info: ValidationInfo) -> list | None:
        kind = info.data.get("kind")
        if kind is None:  # kind failed its own validation: nothing to check against
            return v
        if v is None:
            return default_levels(kind)
        if len(v) == 0:
            raise ValueError("must list at least one level")
        if kind == "subset":
            bad = [s for s in v if not isinstance(s, str) or s not in SUBSETS]
            if bad:
                raise ValueError(f"subset levels must be modality subsets {list(SUBSETS)}, got {bad}")
            if len(set(v)) != len(v):
                raise ValueError(f"duplicate subsets in {v}")
            return v
        if any(isinstance(x, str) for x in v):
            raise ValueError(f"{kind} levels must be numbers, got {v}")
        for x in v:
            if not math.isfinite(x) or x < 0:
                raise ValueError(f"{kind} level {x} must be a finite number >= 0")
            if kind != "noise" and x > 1:
                raise ValueError(f"{kind} level {x} is a missing rate and must be in [0, 1]")
            if kind == "inter" and x > INTER_MAX_RATE + _EPS:
                raise ValueError(
                    f"inter level {x} is impossible: a sample never loses all three modalities, "
                    f"so the whole-modality missing rate is at most 2/3"
                )
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"levels must be strictly increasing, got {v}")
        return v

    @field_validator("mixed_inter_ratio")
    @classmethod
    def _check_ratio(cls, v: float, info: ValidationInfo) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError("must be a finite number >= 0")
        levels = info.data.get("levels")
        if info.data.get("kind") == "mixed" and levels:
            top = max(levels)
            if v * top > INTER_MAX_RATE + _EPS:
                raise ValueError(
                    f"mixed level {top} asks for a whole-modality rate {v}*{top} = {v * top:.4g} > 2/3"
                )
        return v

    @field_validator("modality_scale")
    @classmethod
    def _check_scale(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        from raymsa.batch import MODALITIES

        if set(v) != set(MODALITIES):
            raise ValueError(f"must give a scale for exactly {list(MODALITIES)}, got {sorted(v)}")
        for m, x in v.items():
            if not math.isfinite(x) or not 0.0 <= x <= 1.0:
                raise ValueError(f"{m}: scale {x} must be in [0, 1] (the level times it is a missing rate)")
        return {m: float(v[m]) for m in MODALITIES}

    @field_validator("train_max_rate")
    @classmethod
    def _check_train_max(cls, v: float, info: ValidationInfo) -> float:
        if not 0.0 <= v <= 1.0:  # NaN fails too
            raise ValueError("must be in [0, 1]")
        ratio = info.data.get("mixed_inter_ratio")
        if info.data.get("kind") == "mixed" and ratio is not None and ratio * v > INTER_MAX_RATE + _EPS:
            raise ValueError(
                f"mixed training draws whole-modality rates up to mixed_inter_ratio*train_max_rate"
                f" = {ratio * v:.4g} > 2/3; lower one of them"
            )
        return v

    @field_validator("train_complete_fraction")
    @classmethod
    def _check_fraction(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be in [0, 1]")
        return v

    # ---- helpers for the loop and reports ----

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.kind

    @property
    def grid(self) -> list[float] | list[str]:
        """The evaluation levels (explicit, or the kind's default)."""
        return list(self.levels) if self.levels is not None else default_levels(self.kind)

    @property
    def numeric(self) -> bool:
        """True when levels are numbers (a curve over x); False for subsets (categories)."""
        return self.kind != "subset"

    @property
    def axis_label(self) -> str:
        return {
            "intra": "frame missing rate",
            "inter": "modality missing rate",
            "subset": "available modalities",
            "mixed": "missing rate (frames; modalities x%g)" % self.mixed_inter_ratio,
            "burst": "burst length (fraction of frames)",
            "noise": "noise std (x feature std)",
            "imbalanced": "severity r (modality missing rates r x %s)" % "/".join(
                f"{self.modality_scale[m]:g}" for m in ("text", "audio", "vision")),
        }[self.kind]

    def level_value(self, level: float | str) -> float | str:
        """Validate one level for this kind: a float rate/std, or a canonical subset string."""
        if self.kind == "subset":
            s = canonical_subset(level) if isinstance(level, str) else level
            if s not in SUBSETS:
                raise ValueError(f"scenario {self.label!r}: unknown subset {level!r}; expected one of {SUBSETS}")
            return s
        if isinstance(level, (str, bytes)) or isinstance(level, bool):
            raise ValueError(f"scenario {self.label!r}: level must be a number, got {level!r}")
        x = float(level)
        if not math.isfinite(x) or x < 0 or (self.kind != "noise" and x > 1):
            raise ValueError(f"scenario {self.label!r}: level {level!r} out of range for kind {self.kind!r}")
        if self.kind == "inter" and x > INTER_MAX_RATE + _EPS:
            raise ValueError(f"scenario {self.label!r}: inter rate {x} > 2/3 is impossible (never all missing)")
        if self.kind == "mixed" and self.mixed_inter_ratio * x > INTER_MAX_RATE + _EPS:
            raise ValueError(
                f"scenario {self.label!r}: mixed level {x} needs a whole-modality rate "
                f"{self.mixed_inter_ratio * x:.4g} > 2/3"
            )
        return x

    def level_label(self, level: float | str) -> str:
        """'0.3' or 'la': a level as a column name / file-name part."""
        v = self.level_value(level)
        return v if isinstance(v, str) else f"{v:g}"

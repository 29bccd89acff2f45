"""Read a study folder's stored results into typed objects.

This is the only module of the report that touches raw JSON/CSV. Everything it reads is checked
here, and an unusable file is a ReportError naming the file (and the key, column or row). What is
absent (runs of a study killed midway, a search without best.json) is not an error: it is recorded
in `StudyResults.missing` / `StudyResults.notes` and the report says so.

Layout read (DIR = <storage>/<study_name>/; everything else in DIR is ignored):
    DIR/study.json
    DIR/search/<model>__<scenario>/best.json
    DIR/search/<model>__<scenario>/trials.csv, repeat<k>/trials.csv   (optional: tuning curves)
    DIR/runs/<model>__<scenario>__seed<S>/eval.csv
    DIR/runs/<model>__<scenario>__seed<S>/preds.npz      (optional: per-sample test predictions)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EVAL_COLUMNS: tuple[str, ...] = (
    "model", "scenario", "eval_scenario", "level", "seed", "split", "metric", "value", "config_id")
# One value per KEY: (model, scenario, eval_scenario, level, seed, split, metric).
KEY: tuple[str, ...] = EVAL_COLUMNS[:7]
# Columns newer eval.csv files carry; an older file without one reads as the default.
OPTIONAL_COLUMNS: dict[str, str] = {"knowledge": "unknown"}
KNOWLEDGE = ("unknown", "known")
DIAG_PREFIX = "diag/"  # diagnostic metrics (raymsa.train.evaluate): kept, never in the metric tables

DATASETS = ("mosi", "mosei", "sims")
SCENARIO_KINDS = ("intra", "inter", "subset", "mixed", "burst", "noise", "imbalanced")
MOSI_METRICS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
                "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")
SIMS_METRICS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
SUBSET_ORDER = "lav"  # canonical letter order of a modality subset: l, a, v


class ReportError(ValueError):
    """A study folder the report cannot be built from; the message names the path (and key)."""


# ---------------------------------------------------------------------------------------------
# Levels
# ---------------------------------------------------------------------------------------------

def numeric_label(x: float) -> str:
    """Canonical text of a numeric level, as raymsa.train.evaluate writes it: 0.0 -> '0',
    0.30000000000000004 -> '0.3', 0.25 -> '0.25'."""
    return f"{float(x):g}"


def level_display(label: str) -> str:
    """A level as a column header: numeric levels with at least one decimal ('0' -> '0.0')."""
    v = _as_number(label)
    if v is None:
        return subset_display(label)
    return f"{v:.1f}" if abs(v - round(v, 1)) < 1e-12 else label


def subset_label(s: str) -> str:
    """Canonical subset name: letters of l/a/v in that order ('al' -> 'la', '{l,v}' -> 'lv')."""
    letters = [c for c in str(s).lower() if c.isalpha()]
    if not letters or any(c not in SUBSET_ORDER for c in letters):
        return str(s)
    return "".join(c for c in SUBSET_ORDER if c in letters)


def subset_display(label: str) -> str:
    """'la' -> '{l,a}' (the CorrKD/HRLF column names)."""
    if label and all(c in SUBSET_ORDER for c in label):
        return "{" + ",".join(label) + "}"
    return label


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Typed study description
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    levels: tuple[str, ...]  # canonical labels, in the study's order
    x: tuple[float, ...] | None  # the numeric levels; None for non-numeric grids (subset)
    knowledge: str = "unknown"  # what the model was told: 'unknown' (default) or 'known' (the oracle arm)

    @property
    def numeric(self) -> bool:
        return self.x is not None

    @property
    def is_subset(self) -> bool:
        return self.kind == "subset" or not self.numeric

    def canonical(self, level: str) -> str:
        """Map a level as written in eval.csv ('0.30', 'al') to this scenario's label."""
        if self.numeric:
            v = _as_number(level)
            if v is None:
                return str(level)
            for lab, xv in zip(self.levels, self.x):
                if abs(v - xv) < 1e-9:
                    return lab
            return numeric_label(v)
        return subset_label(level)


@dataclass(frozen=True)
class SeedPlan:
    """study.json "seed_plan": the planned looks are at n = initial, initial + step, ..., max seeds."""

    initial: int  # seeds every run gets first
    max: int  # the cap
    step: int  # seeds a round adds (0: a single look)

    @property
    def looks(self) -> tuple[int, ...]:
        out = [self.initial]
        while self.step > 0 and out[-1] < self.max:
            out.append(min(out[-1] + self.step, self.max))
        return tuple(out)


@dataclass(frozen=True)
class Study:
    name: str
    dataset: str
    data_source: str
    models: tuple[str, ...]
    reference_model: str | None
    seeds: tuple[int, ...]
    smoke: bool
    scenarios: tuple[Scenario, ...]
    objective: dict[str, str]
    created: str
    search_repeats: int = 1  # independent searches per (model, scenario), repeat k paired with seeds[j], j % K == k
    # seed rounds (study.json 'rounds'): per round its seeds and the 'model__scenario' runs that got
    # them; empty for older studies, where every run has every seed
    rounds: tuple[tuple[tuple[int, ...], tuple[str, ...], str], ...] = ()

    def expected_seeds(self, model: str, scenario: str) -> tuple[int, ...]:
        """The seeds the study trained (or meant to) for one (model, scenario)."""
        if not self.rounds:
            return self.seeds
        key = f"{model}__{scenario}"
        return tuple(s for seeds, runs, _ in self.rounds if key in runs for s in seeds)
    # label -> registered model (a study's labels may be variants of one model); older files: identity
    model_of: dict[str, str] = field(default_factory=dict)
    # tuned label -> its default arm's label (search.default_arm); older files: none
    default_arms: dict[str, str] = field(default_factory=dict)

    def registry_name(self, label: str) -> str:
        return self.model_of.get(label, label)
    seed_plan: SeedPlan | None = None  # adaptive seeding; None = one look at the seeds run
    equivalence_margin: dict[str, float] = field(default_factory=dict)  # config.report.equivalence_margin

    @property
    def all_models(self) -> tuple[str, ...]:
        """The study's models plus the reference model if it is not listed among them."""
        ref = self.reference_model
        return self.models + ((ref,) if ref and ref not in self.models else ())

    @property
    def metrics(self) -> tuple[str, ...]:
        return SIMS_METRICS if self.dataset == "sims" else MOSI_METRICS

    def scenario(self, name: str) -> Scenario | None:
        for s in self.scenarios:
            if s.name == name:
                return s
        return None


@dataclass(frozen=True)
class BestConfig:
    """DIR/search/<model>__<scenario>/best.json."""

    model: str
    scenario: str
    config_id: str
    params: dict[str, Any]
    objective_metric: str
    objective_mode: str
    objective_value: float
    importances: dict[str, float]
    n_trials: int | None
    source: Path
    # fANOVA importances summed per search-space group (loss, regularisation); older files: none
    group_importances: dict[str, float] = field(default_factory=dict)
    # the scenarios whose best configs this search started from (search.warm_start); older files: none
    warm_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunPreds:
    """One run's per-sample test predictions under its own scenario (preds.npz)."""

    labels: np.ndarray  # (N,)
    index: np.ndarray  # (N,) position of each sample in the test split
    preds: dict[str, np.ndarray]  # canonical level -> (N,) predictions
    source: Path


@dataclass
class StudyResults:
    dir: Path
    study: Study
    results: pd.DataFrame  # tidy eval rows, EVAL_COLUMNS, sorted; levels canonical
    best: dict[tuple[str, str], BestConfig]
    missing: list[str] = field(default_factory=list)  # expected things that are absent
    notes: list[str] = field(default_factory=list)  # other facts worth a reader's attention
    preds: dict[tuple[str, str, int], RunPreds] = field(default_factory=dict)  # (model, scenario, seed)
    trials: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)  # (model, scenario) -> trials.csv rows

    @property
    def test(self) -> pd.DataFrame:
        return self.results[self.results["split"] == "test"]


# ---------------------------------------------------------------------------------------------
# study.json
# ---------------------------------------------------------------------------------------------

def _req(data: dict, key: str, types: type | tuple, src: Path, where: str = "") -> Any:
    name = f"{where}{key}"
    if key not in data:
        raise ReportError(f"{src}: missing key '{name}'")
    v = data[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in _tuple(types)):
        raise ReportError(f"{src}: key '{name}': expected {_typename(types)}, got {v!r}")
    return v


def _tuple(t: type | tuple) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def _typename(t: type | tuple) -> str:
    return " or ".join(x.__name__ for x in _tuple(t))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON: {e}") from None
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object at the top level")
    return data


def _parse_scenario(d: Any, i: int, src: Path) -> Scenario:
    where = f"scenarios[{i}]."
    if not isinstance(d, dict):
        raise ReportError(f"{src}: key 'scenarios[{i}]': expected an object, got {d!r}")
    name = _req(d, "name", str, src, where)
    kind = _req(d, "kind", str, src, where)
    if kind not in SCENARIO_KINDS:
        raise ReportError(f"{src}: key '{where}kind': {kind!r} is not one of {', '.join(SCENARIO_KINDS)}")
    raw = _req(d, "levels", list, src, where)
    if not raw:
        raise ReportError(f"{src}: key '{where}levels': empty")
    nums = [_as_number(v) if not isinstance(v, str) else None for v in raw]
    if kind != "subset" and all(n is not None for n in nums):
        labels = tuple(numeric_label(n) for n in nums)
        x: tuple[float, ...] | None = tuple(nums)
    else:
        labels = tuple(subset_label(str(v)) for v in raw)
        x = None
    if len(set(labels)) != len(labels):
        raise ReportError(f"{src}: key '{where}levels': repeated level in {raw!r}")
    knowledge = d.get("knowledge", "unknown")  # older study.json files: the only arm there was
    if knowledge not in KNOWLEDGE:
        raise ReportError(f"{src}: key '{where}knowledge': {knowledge!r} is not one of {', '.join(KNOWLEDGE)}")
    return Scenario(name=name, kind=kind, levels=labels, x=x, knowledge=knowledge)


def read_study_json(path: Path) -> Study:
    d = _read_json(path)
    name = _req(d, "name", str, path)
    dataset = _req(d, "dataset", str, path).lower()
    if dataset not in DATASETS:
        raise ReportError(f"{path}: key 'dataset': {dataset!r} is not one of {', '.join(DATASETS)}")
    models = _req(d, "models", list, path)
    if not models or not all(isinstance(m, str) for m in models):
        raise ReportError(f"{path}: key 'models': expected a non-empty list of names, got {models!r}")
    ref = d.get("reference_model")
    if ref is not None and not isinstance(ref, str):
        raise ReportError(f"{path}: key 'reference_model': expected a name or null, got {ref!r}")
    seeds = d.get("seeds", [])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ReportError(f"{path}: key 'seeds': expected a list of integers, got {seeds!r}")
    scen_raw = _req(d, "scenarios", list, path)
    if not scen_raw:
        raise ReportError(f"{path}: key 'scenarios': empty")
    scenarios = tuple(_parse_scenario(s, i, path) for i, s in enumerate(scen_raw))
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ReportError(f"{path}: key 'scenarios': repeated scenario name in {names}")
    obj = d.get("objective") or {}
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: key 'objective': expected an object, got {obj!r}")
    return Study(
        name=name,
        dataset=dataset,
        data_source=str(d.get("data_source", "")),
        models=tuple(models),
        reference_model=ref,
        seeds=tuple(seeds),
        smoke=bool(d.get("smoke", False)),
        scenarios=scenarios,
        objective={k: str(v) for k, v in obj.items()},
        created=str(d.get("created", "")),
        search_repeats=_repeats(d, path),
        rounds=_rounds(d, path),
        seed_plan=_seed_plan(d, path),
        equivalence_margin=_margins(d, path),
        model_of=_model_of(d, path, models, ref),
        default_arms=_default_arms(d, path, models),
    )


def _rounds(d: dict, path: Path) -> tuple:
    raw = d.get("rounds")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ReportError(f"{path}: key 'rounds': expected a list, got {raw!r}")
    out = []
    for i, r in enumerate(raw):
        seeds, runs = (r.get("seeds"), r.get("runs")) if isinstance(r, dict) else (None, None)
        if not (isinstance(seeds, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ReportError(f"{path}: key 'rounds[{i}].seeds': expected a list of integers, got {seeds!r}")
        if not (isinstance(runs, list) and all(isinstance(x, str) for x in runs)):
            raise ReportError(f"{path}: key 'rounds[{i}].runs': expected a list of 'model__scenario' names, got {runs!r}")
        out.append((tuple(seeds), tuple(runs), str(r.get("why", ""))))
    return tuple(out)


def _model_of(d: dict, path: Path, models: list[str], ref: str | None) -> dict[str, str]:
    raw = d.get("model_of")
    labels = models + ([ref] if ref and ref not in models else [])
    if raw is None:
        return {m: m for m in labels}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ReportError(f"{path}: key 'model_of': expected an object of label -> model name, got {raw!r}")
    return {m: raw.get(m, m) for m in labels}


def _default_arms(d: dict, path: Path, models: list[str]) -> dict[str, str]:
    raw = d.get("default_arms")
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ReportError(f"{path}: key 'default_arms': expected an object of label -> label, got {raw!r}")
    unknown = sorted({x for kv in raw.items() for x in kv} - set(models))
    if unknown:
        raise ReportError(f"{path}: key 'default_arms': {unknown} not among 'models'")
    return dict(raw)


def _seed_plan(d: dict, path: Path) -> SeedPlan | None:
    p = d.get("seed_plan")
    if p is None:
        return None
    if not isinstance(p, dict):
        raise ReportError(f"{path}: key 'seed_plan': expected an object, got {p!r}")
    init = _req(p, "initial", list, path, "seed_plan.")
    mx = p.get("max", len(init))
    step = p.get("step", 0)
    for k, v in (("max", mx), ("step", step)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ReportError(f"{path}: key 'seed_plan.{k}': expected an integer >= 0, got {v!r}")
    if not init or mx < len(init):
        raise ReportError(f"{path}: key 'seed_plan': needs 1 <= len(initial) <= max, got {len(init)} and {mx}")
    return SeedPlan(initial=len(init), max=mx, step=step)


def _margins(d: dict, path: Path) -> dict[str, float]:
    rep = (d.get("config") or {}).get("report") or {}
    m = rep.get("equivalence_margin") or {} if isinstance(rep, dict) else {}
    if not isinstance(m, dict):
        raise ReportError(f"{path}: key 'config.report.equivalence_margin': expected an object, got {m!r}")
    for k, v in m.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ReportError(f"{path}: key 'config.report.equivalence_margin.{k}': expected a number > 0, got {v!r}")
    return {str(k): float(v) for k, v in m.items()}


def _repeats(d: dict, path: Path) -> int:
    search = (d.get("config") or {}).get("search") or {}
    k = search.get("repeats", 1) if isinstance(search, dict) else 1
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ReportError(f"{path}: key 'config.search.repeats': expected an integer >= 1, got {k!r}")
    return k


# ---------------------------------------------------------------------------------------------
# search/*/best.json
# ---------------------------------------------------------------------------------------------

def read_best_json(path: Path) -> BestConfig:
    d = _read_json(path)
    obj = _req(d, "objective", dict, path)
    value = _req(obj, "value", (int, float), path, "objective.")
    imps = d.get("importances") or {}
    if not isinstance(imps, dict):
        raise ReportError(f"{path}: key 'importances': expected an object, got {imps!r}")
    for k, v in imps.items():
        if _as_number(v) is None or isinstance(v, str):
            raise ReportError(f"{path}: key 'importances.{k}': expected a number, got {v!r}")
    n_trials = d.get("n_trials")
    if n_trials is not None and (not isinstance(n_trials, int) or isinstance(n_trials, bool)):
        raise ReportError(f"{path}: key 'n_trials': expected an integer, got {n_trials!r}")
    return BestConfig(
        model=_req(d, "model", str, path),
        scenario=_req(d, "scenario", str, path),
        config_id=str(_req(d, "config_id", (str, int), path)),
        params=dict(_req(d, "params", dict, path)),
        objective_metric=str(obj.get("metric", "")),
        objective_mode=str(obj.get("mode", "")),
        objective_value=float(value),
        importances={k: float(v) for k, v in imps.items()},
        n_trials=n_trials,
        source=path,
        group_importances=_number_map(d, "group_importances", path),
        warm_from=tuple(str(w.get("from", "")) for w in (d.get("warm_start") or []) if isinstance(w, dict)),
    )


def _number_map(d: dict, key: str, path: Path) -> dict[str, float]:
    raw = d.get(key) or {}
    if not isinstance(raw, dict):
        raise ReportError(f"{path}: key '{key}': expected an object, got {raw!r}")
    for k, v in raw.items():
        if _as_number(v) is None or isinstance(v, str):
            raise ReportError(f"{path}: key '{key}.{k}': expected a number, got {v!r}")
    return {k: float(v) for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------
# runs/*/eval.csv
# ---------------------------------------------------------------------------------------------

def read_eval_csv(path: Path) -> pd.DataFrame:
    """One run's eval rows, checked: all columns present, value numeric (NaN allowed), seed integer."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: empty file (no header)") from None
    except pd.errors.ParserError as e:
        raise ReportError(f"{path}: not a valid CSV: {str(e).strip()}") from None
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    for col in EVAL_COLUMNS:
        if col not in raw.columns:
            raise ReportError(f"{path}: missing column '{col}' (have: {', '.join(raw.columns)})")
    df = raw[list(EVAL_COLUMNS)].copy()
    for col, default in OPTIONAL_COLUMNS.items():
        df[col] = raw[col].fillna(default).str.strip() if col in raw.columns else default
    bad = ~df["knowledge"].isin(KNOWLEDGE)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ReportError(f"{path}: column 'knowledge' has {df['knowledge'].iloc[i]!r} on line {i + 2}; "
                          f"expected one of {', '.join(KNOWLEDGE)}")
    for col in ("model", "scenario", "eval_scenario", "level", "split", "metric"):
        s = df[col].str.strip()
        empty = s.isna() | (s == "")
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0]) + 2  # +1 header, +1 one-based
            raise ReportError(f"{path}: column '{col}' is empty on line {row}")
        df[col] = s
    df["config_id"] = df["config_id"].fillna("").str.strip()

    value = pd.to_numeric(df["value"].str.strip(), errors="coerce")
    bad = value.isna() & df["value"].notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ReportError(f"{path}: column 'value' has a non-numeric value {df['value'].iloc[i]!r} "
                          f"on line {i + 2}")
    seed = pd.to_numeric(df["seed"].str.strip(), errors="coerce")
    bad = seed.isna() | (seed.fillna(0) % 1 != 0)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ReportError(f"{path}: column 'seed' has a non-integer value {df['seed'].iloc[i]!r} "
                          f"on line {i + 2}")
    df["value"] = value.astype("float64")
    df["seed"] = seed.astype("int64")
    return df


# ---------------------------------------------------------------------------------------------
# search/*/trials.csv
# ---------------------------------------------------------------------------------------------

def read_trials_csv(path: Path) -> pd.DataFrame:
    """A search's trials: column 'objective' numeric (NaN allowed: a failed trial)."""
    try:
        raw = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: empty file (no header)") from None
    except pd.errors.ParserError as e:
        raise ReportError(f"{path}: not a valid CSV: {str(e).strip()}") from None
    if "objective" not in raw.columns:
        raise ReportError(f"{path}: missing column 'objective' (have: {', '.join(map(str, raw.columns))})")
    obj = pd.to_numeric(raw["objective"], errors="coerce")
    bad = obj.isna() & raw["objective"].notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ReportError(f"{path}: column 'objective' has a non-numeric value {raw['objective'].iloc[i]!r} "
                          f"on line {i + 2}")
    raw["objective"] = obj.astype("float64")
    return raw


# ---------------------------------------------------------------------------------------------
# runs/*/preds.npz
# ---------------------------------------------------------------------------------------------

def read_preds_npz(path: Path, scenario: Scenario | None, scenario_name: str) -> RunPreds:
    """The predictions of one run under its own scenario, checked (array names, shapes, finiteness)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise ReportError(f"{path}: not a readable .npz file: {e}") from None
    for k in ("eval_scenario", "level", "pred", "labels", "index"):
        if k not in arrays:
            raise ReportError(f"{path}: missing array '{k}' (have: {', '.join(sorted(arrays))})")
    pred, labels = arrays["pred"], arrays["labels"]
    n = labels.shape[0] if labels.ndim == 1 else -1
    if n < 1 or pred.ndim != 2 or pred.shape[1] != n or arrays["index"].shape != (n,):
        raise ReportError(f"{path}: array 'pred' must be (K, N) with N = len(labels) = len(index); "
                          f"got pred {pred.shape}, labels {labels.shape}, index {arrays['index'].shape}")
    if arrays["eval_scenario"].shape != (pred.shape[0],) or arrays["level"].shape != (pred.shape[0],):
        raise ReportError(f"{path}: arrays 'eval_scenario' and 'level' must have one entry per row of 'pred'")
    if not (np.isfinite(pred).all() and np.isfinite(labels).all()):
        raise ReportError(f"{path}: array 'pred' or 'labels' has non-finite values")
    own = {}
    for e, lv, p in zip(arrays["eval_scenario"].tolist(), arrays["level"].tolist(), pred):
        if e == scenario_name:
            own[scenario.canonical(lv) if scenario is not None else lv] = p.astype(np.float64)
    return RunPreds(labels=labels.astype(np.float64), index=arrays["index"], preds=own, source=path)


# ---------------------------------------------------------------------------------------------
# The whole folder
# ---------------------------------------------------------------------------------------------

def _rank(values: pd.Series, order: list[str]) -> pd.Series:
    """Sort key: position in `order`, unknown values after it alphabetically."""
    pos = {v: i for i, v in enumerate(order)}
    extra = sorted(set(values) - set(pos))
    pos.update({v: len(order) + i for i, v in enumerate(extra)})
    return values.map(pos).astype("int64")


def _sorted(df: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Sort eval rows by the study's order of models, scenarios, levels and metrics."""
    scen_order = [s.name for s in study.scenarios]
    level_pos = pd.Series(0, index=df.index, dtype="int64")
    for name, idx in df.groupby("eval_scenario", sort=False).groups.items():
        sc = study.scenario(name)
        order = list(sc.levels) if sc else []
        level_pos.loc[idx] = _rank(df.loc[idx, "level"], order)
    keys = pd.DataFrame({
        "m": _rank(df["model"], list(study.all_models)),
        "s": _rank(df["scenario"], scen_order),
        "e": _rank(df["eval_scenario"], scen_order),
        "l": level_pos,
        "seed": df["seed"],
        "sp": _rank(df["split"], ["test", "valid", "train"]),
        "me": _rank(df["metric"], list(study.metrics)),
    })
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return df.loc[order].reset_index(drop=True)


def load_study(dir: str | Path) -> StudyResults:
    """Read and check everything the report needs from a study folder.

    Raises ReportError for a folder that is not a study (no study.json), has no results at all,
    or holds a file that cannot be read as documented.
    """
    d = Path(dir)
    if not d.is_dir():
        raise ReportError(f"{d}: not a folder")
    sj = d / "study.json"
    if not sj.is_file():
        raise ReportError(f"{d}: not a study folder (no study.json)")
    study = read_study_json(sj)
    missing: list[str] = []
    notes: list[str] = []

    # --- eval rows
    frames = []
    preds: dict[tuple[str, str, int], RunPreds] = {}
    why: dict[str, str] = {}  # run folder name -> why it gave no rows
    run_dirs = sorted(p for p in (d / "runs").glob("*") if p.is_dir()) if (d / "runs").is_dir() else []
    for rd in run_dirs:
        f = rd / "eval.csv"
        if not f.is_file():
            why[rd.name] = f"runs/{rd.name}/ has no eval.csv; unfinished run?"
            continue
        df = read_eval_csv(f)
        if df.empty:
            why[rd.name] = f"runs/{rd.name}/eval.csv has no rows"
            continue
        df["_file"] = str(f)
        frames.append(df)
        pf = rd / "preds.npz"
        if pf.is_file():
            m, sname, seed = df["model"].iloc[0], df["scenario"].iloc[0], int(df["seed"].iloc[0])
            preds[(m, sname, seed)] = read_preds_npz(pf, study.scenario(sname), sname)
    if not frames:
        raise ReportError(f"{d}: no results (no rows in runs/*/eval.csv)")
    results = pd.concat(frames, ignore_index=True)

    # canonical level labels per eval scenario ('0.30' -> '0.3', 'al' -> 'la')
    for name, idx in results.groupby("eval_scenario", sort=False).groups.items():
        sc = study.scenario(name)
        if sc is not None:
            results.loc[idx, "level"] = results.loc[idx, "level"].map(sc.canonical)

    dup = results.duplicated(list(KEY), keep=False)
    if dup.any():
        r = results[dup].iloc[0]
        files = sorted(set(results.loc[dup & (results[list(KEY)] == r[list(KEY)]).all(axis=1), "_file"]))
        key = ", ".join(f"{k}={r[k]}" for k in KEY)
        raise ReportError(f"{files[0]}: row ({key}) appears more than once"
                          + (f" (also in {', '.join(files[1:])})" if len(files) > 1 else ""))
    results = _sorted(results.drop(columns="_file"), study)

    # --- what the study promised and the folder lacks
    present = set(map(tuple, results[["model", "scenario", "seed"]].drop_duplicates().to_numpy().tolist()))
    for m in study.all_models:
        for sc in study.scenarios:
            for s in study.expected_seeds(m, sc.name):
                if (m, sc.name, int(s)) not in present:
                    run = f"{m}__{sc.name}__seed{s}"
                    missing.append(f"run {run}: no results ({why.pop(run, 'no run folder')})")
    missing.extend(why.values())  # run folders the study did not ask for, without rows
    test = results[results["split"] == "test"]
    for (m, sname, seed), g in test[test["scenario"] == test["eval_scenario"]].groupby(
            ["model", "scenario", "seed"], sort=False):
        sc = study.scenario(sname)
        if sc is None:
            continue
        lack = [lv for lv in sc.levels if lv not in set(g["level"])]
        if lack:
            missing.append(f"run {m}__{sname}__seed{seed}: no test rows at level(s) {', '.join(lack)}")
    known = {s.name for s in study.scenarios}
    for col in ("scenario", "eval_scenario"):
        extra = sorted(set(results[col]) - known)
        if extra:
            notes.append(f"results name {col} value(s) not in study.json ({', '.join(extra)}): "
                         "kept in results.csv and summary.csv, left out of the tables")
    extra_models = sorted(set(results["model"]) - set(study.all_models))
    if extra_models:
        notes.append(f"results name model(s) not in study.json ({', '.join(extra_models)}): "
                     "kept in results.csv and summary.csv, left out of the tables")
    unknown_metrics = sorted(m for m in set(results["metric"]) - set(study.metrics) if not m.startswith(DIAG_PREFIX))
    if unknown_metrics:
        notes.append(f"metric(s) not among the {study.dataset.upper()} keys ({', '.join(unknown_metrics)}): "
                     "kept in results.csv and summary.csv, left out of the tables")
    for sc in study.scenarios:
        if not sc.numeric:
            continue
        extra_lv = sorted(set(results.loc[results["eval_scenario"] == sc.name, "level"]) - set(sc.levels))
        if extra_lv:
            notes.append(f"scenario {sc.name}: level(s) {', '.join(extra_lv)} are not in its grid; "
                         "left out of the tables")

    # --- search results
    best: dict[tuple[str, str], BestConfig] = {}
    search = d / "search"
    searched_models: set[str] = set()
    trials: dict[tuple[str, str], pd.DataFrame] = {}
    if search.is_dir():
        for sd in sorted(p for p in search.glob("*") if p.is_dir()):
            files = [sd / "trials.csv"] + sorted(sd.glob("repeat*/trials.csv"))
            parts = [read_trials_csv(f).assign(repeat=0 if f.parent == sd else f.parent.name) for f in files
                     if f.is_file()]
            if parts and "__" in sd.name:
                trials[tuple(sd.name.split("__", 1))] = pd.concat(parts, ignore_index=True)
            f = sd / "best.json"
            if not f.is_file():
                missing.append(f"search/{sd.name}/best.json absent (search unfinished?)")
                searched_models.add(sd.name.split("__", 1)[0])
                continue
            b = read_best_json(f)
            best[(b.model, b.scenario)] = b
            searched_models.add(b.model)
    for m in study.all_models:
        if m not in searched_models:
            notes.append(f"model {m}: no search (default config)")
            continue
        for sc in study.scenarios:
            if (m, sc.name) not in best and not any(x.startswith(f"search/{m}__{sc.name}/") for x in missing):
                missing.append(f"search {m}__{sc.name}: no best.json")

    notes.extend(diverged_notes(d, study, results))
    return StudyResults(dir=d, study=study, results=results, best=best, missing=missing, notes=notes,
                        preds=preds, trials=trials)


# labels of the MMSA sets lie in [-3, 3] (MOSI, MOSEI) or [-1, 1] (SIMS): an MAE beyond the range's
# width is worse than any constant inside it, so the predictions left the range: training diverged
LABEL_SPAN = {"mosi": 6.0, "mosei": 6.0, "sims": 2.0}


def diverged_notes(d: Path, study: Study, results: pd.DataFrame) -> list[str]:
    """Search trials (best.json 'diverged_trials') and runs (test MAE) whose MAE left the label range."""
    span = LABEL_SPAN.get(study.dataset)
    out = []
    for f in sorted((d / "search").glob("*/best.json")) if (d / "search").is_dir() else []:
        ids = _read_json(f).get("diverged_trials") or []
        if ids:
            out.append(f"diverged: search/{f.parent.name}: {len(ids)} trial(s) with valid MAE beyond the label "
                       f"range ({', '.join(map(str, ids))}; search/{f.parent.name}/trials.csv, column 'diverged')")
    if span is None:
        return out
    mae = results[(results["split"] == "test") & (results["metric"] == "MAE")]
    for (m, sc, seed), v in mae.groupby(["model", "scenario", "seed"], sort=False)["value"].max().items():
        if v > span:
            out.append(f"diverged: run {m}__{sc}__seed{seed}: test MAE up to {v:.3g}, beyond the label range's "
                       f"width {span:g}; its numbers are in the tables but mean nothing")
    return out

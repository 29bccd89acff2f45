"""Verdicts of comparisons.csv: a headline family under family-wise control, equivalence margins,
sequential looks for adaptive seeding, and the test set's resolution floor (docs/report.md).

compare.py computes each row's paired difference, its bootstrap standard error and the variance
components of the per-sample differences; this module turns those into p-values, adjusted values,
verdicts and floors, and tells the runner which headline comparisons are still open.

- Headline family: each model that is neither the reference nor a default arm against the reference,
  plus each tuned model against its default arm, per scenario, on the search objective (MAE when the
  objective is not a per-sample metric), summary "mean over levels" (subset scenarios: "Avg
  (incomplete subsets)"). Every other row is exploratory.
- Tests (alpha = 5 %): the difference test is a two-sided Wald z-test on the paired bootstrap's SE;
  equivalence is Schuirmann's two one-sided tests (TOST) against +-margin with the same SE.
- Multiplicity: headline p-values are weighted by the sequential look (below) and Holm-adjusted;
  exploratory ones get Benjamini-Hochberg q-values (statsmodels.stats.multitest.multipletests).
- Sequential looks: Lan-DeMets alpha spending with the Pocock-type function
  alpha(t) = alpha * ln(1 + (e - 1) t) over the planned information fractions t_k = n_k / max; the
  look k may spend alpha_k = alpha(t_k) - alpha(t_{k-1}), and a p-value at look k counts as
  p * alpha / alpha_k (a union bound over the looks: valid whatever the looks' correlation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from raymsa.report.load import SeedPlan, Study

ALPHA = 0.05
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)
HEADLINE, EXPLORATORY = "headline", "exploratory"
ACCURACIES = ("Mult_acc_7", "Mult_acc_5", "Mult_acc_3", "Mult_acc_2", "Non0_acc_2", "Has0_acc_2")
# raw units (accuracies in 0..1): why these values, docs/report.md "Equivalence margins"
DEFAULT_MARGINS: dict[str, float] = {"MAE": 0.02, **{k: 0.01 for k in ACCURACIES}}
RESAMPLED = ("MAE", *ACCURACIES)  # per-sample metrics compare.py can resample
POWER = 0.80
MAX_SEEDS_SEARCHED = 10_000  # seeds_needed beyond this reads NaN (the test set bounds the row)
NEW_COLUMNS = ("family", "p_value", "p_adjusted", "p_equivalence", "p_equivalence_adjusted", "margin",
               "look", "alpha_look", "floor", "floor_samples", "floor_seeds", "floor_at_max", "floor_limit",
               "rho", "seeds_needed")


# ---------------------------------------------------------------------------------------------
# the study's settings
# ---------------------------------------------------------------------------------------------

def margin_for(study: Study, metric: str) -> float:
    return study.equivalence_margin.get(metric, DEFAULT_MARGINS.get(metric, math.nan))


def objective_metric(study: Study) -> str:
    m = study.objective.get("metric", "MAE")
    return m if m in RESAMPLED else "MAE"


def plan_of(study: Study, n_seeds: int | None = None) -> SeedPlan:
    """The study's seed plan; without one a single look at the seeds the study ran."""
    if study.seed_plan is not None:
        return study.seed_plan
    n = len(study.seeds) or (n_seeds or 1)
    return SeedPlan(initial=n, max=n, step=0)


def spending(plan: SeedPlan) -> np.ndarray:
    """alpha_k per planned look: increments of the Pocock-type spending function (Lan & DeMets 1983)."""
    t = np.asarray(plan.looks, dtype=float) / plan.max
    spent = ALPHA * np.log1p((math.e - 1.0) * t)
    spent[-1] = ALPHA  # the last look is at t = 1 (guards against rounding)
    return np.diff(np.concatenate([[0.0], spent]))


def look_index(plan: SeedPlan, n_seeds: int) -> int:
    """The last planned look a row with n_seeds has reached (fewer seeds than the first: look 0)."""
    looks = plan.looks
    return max([k for k, n in enumerate(looks) if n <= n_seeds] or [0])


def headline_summary(scenario_is_numeric: bool) -> str:
    return "mean over levels" if scenario_is_numeric else "Avg (incomplete subsets)"


def headline_pairs(study: Study) -> list[tuple[str, str]]:
    """(model, reference) pairs of the headline family, in the study's order."""
    ref = study.reference_model
    defaults = set(study.default_arms.values())
    out = [(m, ref) for m in study.all_models if ref and m != ref and m not in defaults]
    out += [(t, d) for t, d in study.default_arms.items() if t in study.all_models and d in study.all_models]
    return out


def is_headline(study: Study, frame: pd.DataFrame) -> np.ndarray:
    pairs = set(headline_pairs(study))
    metric = objective_metric(study)
    numeric = {sc.name: sc.numeric for sc in study.scenarios}
    return np.array([(r.model, r.reference) in pairs and r.metric == metric
                     and r.summary == headline_summary(numeric.get(r.scenario, True))
                     for r in frame.itertuples()], dtype=bool)


# ---------------------------------------------------------------------------------------------
# tests on one row
# ---------------------------------------------------------------------------------------------

def _sf(x: float, df: float) -> float:
    return float(sps.norm.sf(x) if not math.isfinite(df) else sps.t.sf(x, df))


def _isf(a: float, df: float) -> float:
    return float(sps.norm.isf(a) if not math.isfinite(df) else sps.t.isf(a, df))


def test_se(se_boot: float, c: Components | None, seed_means: np.ndarray) -> tuple[float, float]:
    """(SE, degrees of freedom) the tests use: the bootstrap SE, raised to the unbiased moment SE
    where that is larger (with 3 seeds the bootstrap's seed part is (S-1)/S of the truth and rests on
    2 df), with Welch-Satterthwaite df for the seed part (S - 1 df) plus the sample part (many)."""
    S = seed_means.size
    if S < 2:
        return se_boot, math.inf
    a = float(seed_means.var(ddof=1)) / S  # seeds' part, incl. the per-run sample noise
    b = c.shared / c.n_samples if c is not None else 0.0
    if a + b == 0 or not math.isfinite(se_boot):
        return se_boot, math.inf
    df = (a + b) ** 2 / (a ** 2 / (S - 1)) if a > 0 else math.inf
    return max(se_boot, math.sqrt(a + b)), df


def p_difference(diff: float, se: float, df: float = math.inf) -> float:
    """Two-sided p of diff = 0 (t with df, normal for df = inf); identical predictions (0 / 0) give 1."""
    if not (math.isfinite(diff) and math.isfinite(se)):
        return math.nan
    if se == 0:
        return 1.0 if diff == 0 else 0.0
    return min(1.0, 2 * _sf(abs(diff) / se, df))


def p_equivalence(diff: float, se: float, margin: float, df: float = math.inf) -> float:
    """TOST: the larger of the one-sided p's of diff <= -margin and diff >= margin."""
    if not (math.isfinite(diff) and math.isfinite(se) and math.isfinite(margin)):
        return math.nan
    if se == 0:
        return 0.0 if abs(diff) < margin else 1.0
    return max(_sf((diff + margin) / se, df), _sf((margin - diff) / se, df))


def verdict_of(diff: float, p_diff: float, p_eq: float, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """equivalent when TOST rejects (the difference, whatever its sign, lies within the margin);
    else better / worse when the difference test rejects; else inconclusive."""
    if math.isfinite(p_eq) and p_eq <= alpha:
        return EQUIVALENT
    if math.isfinite(p_diff) and p_diff <= alpha and diff != 0:
        return BETTER if (diff > 0) == higher_is_better else WORSE
    return INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# the resolution floor: variance components of the per-sample differences
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Components:
    """d_si = mu + a_s + b_i + e_si (seed s, test sample i), moment estimates from one (S, N) matrix:
    seed (var a), shared (var b: the part of a sample's difference every seed repeats) and resid
    (var e: the part that averages out over seeds). rho = shared / (shared + resid)."""

    seed: float
    shared: float
    resid: float
    n_samples: int
    rho: float  # NaN with one seed (not identifiable)

    def var(self, n_seeds: float, n_samples: int | None = None) -> tuple[float, float]:
        """(test-sample part, seed part) of the variance of the mean difference."""
        n = n_samples or self.n_samples
        return self.shared / n + self.resid / (n_seeds * n), self.seed / n_seeds


def components(d: np.ndarray) -> Components:
    """From per-sample paired differences d (S, N) whose mean over samples is each seed's diff."""
    S, N = d.shape
    r = d - d.mean(axis=1, keepdims=True)
    within = float((r ** 2).sum() / (S * (N - 1))) if N > 1 else 0.0
    if S < 2:
        # rho unknown: count every sample's noise as shared (more seeds would not shrink it)
        return Components(seed=0.0, shared=within, resid=0.0, n_samples=N, rho=math.nan)
    tot = float((r.sum(axis=0) ** 2).sum())
    shared = max((tot - float((r ** 2).sum())) / (S * (S - 1) * (N - 1)), 0.0)
    resid = max(within - shared, 0.0)
    between = float(d.mean(axis=1).var(ddof=1))
    seed = max(between - resid / N, 0.0)
    rho = shared / within if within > 0 else math.nan
    return Components(seed=seed, shared=shared, resid=resid, n_samples=N, rho=rho)


def z_one_sided(alpha: float) -> float:
    return float(sps.norm.isf(alpha))


def half_width(c: Components, scale: float, n_seeds: float, z: float, n_samples: int | None = None) -> float:
    """z * SE projected to n_seeds (and n_samples), SE^2 = scale * model variance (scale ties the model
    to the bootstrap's SE at the seeds run)."""
    vs, vd = c.var(n_seeds, n_samples)
    return z * math.sqrt(scale * (vs + vd))


def seeds_needed(c: Components, scale: float, diff: float, margin: float, alpha: float,
                 n_samples: int | None = None) -> float:
    """Smallest number of seeds at which a row with this |diff| would resolve at level alpha with 80 %
    power: (z_{1-alpha/2} + z_power) SE <= |diff| (a difference), or, for equivalence,
    (z_{1-alpha} + z_{(1+power)/2}) SE <= margin - |diff|; NaN when no number of seeds does."""
    zd = float(sps.norm.isf(alpha / 2) + sps.norm.ppf(POWER))
    ze = float(sps.norm.isf(alpha) + sps.norm.ppf((1 + POWER) / 2))
    best = math.nan
    for z, target in ((zd, abs(diff)), (ze, margin - abs(diff))):
        if not (target > 0 and math.isfinite(target)):
            continue
        vs_inf = scale * c.shared / (n_samples or c.n_samples)
        per_seed = scale * (c.seed + c.resid / (n_samples or c.n_samples))  # variance * n_seeds
        room = (target / z) ** 2 - vs_inf
        if room <= 0:
            continue
        n = 1.0 if per_seed == 0 else math.ceil(per_seed / room)
        if n <= MAX_SEEDS_SEARCHED and not (n >= best):
            best = float(max(n, 1.0))
    return best


def samples_needed(c: Components, scale: float, n_seeds: int, margin: float, alpha: float) -> float:
    """Smallest test-set size at which equivalence of a zero difference is reachable with 80 % power at
    n_seeds: seed / n + (shared + resid / n) / N <= (margin / (z_{1-alpha} + z_{0.9}))^2, solved for N."""
    ze = float(sps.norm.isf(alpha) + sps.norm.ppf((1 + POWER) / 2))
    room = (margin / ze) ** 2 / scale - c.seed / n_seeds
    if room <= 0:
        return math.nan
    return float(math.ceil((c.shared + c.resid / n_seeds) / room))


# ---------------------------------------------------------------------------------------------
# the whole table
# ---------------------------------------------------------------------------------------------

def _weighted(p: np.ndarray, alpha_k: np.ndarray) -> np.ndarray:
    return np.minimum(1.0, p * ALPHA / alpha_k)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: the same numbers as statsmodels' multipletests(method="holm")
    (tests/test_verdicts.py checks it), without its gc.collect() call, which costs ~0.5 s a call here."""
    order = np.argsort(p, kind="stable")
    m = p.size
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out


def _adjust(p: np.ndarray, method: str) -> np.ndarray:
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = holm(p[ok]) if method == "holm" else multipletests(p[ok], alpha=ALPHA, method=method)[1]
    return out


def decide(frame: pd.DataFrame, study: Study, comps: list[Components | None], higher: list[bool]) -> pd.DataFrame:
    """Add the NEW_COLUMNS and the adjusted verdict to compare.py's rows (one Components per row,
    None where there are no per-sample predictions; higher[i]: is a larger diff better)."""
    f = frame.copy()
    if f.empty:
        for c in NEW_COLUMNS:
            f[c] = pd.Series(dtype=object if c == "family" else float)
        return f
    head = is_headline(study, f)
    m_head = int(head.sum())
    plan = plan_of(study)
    alpha_k = spending(plan)
    f["family"] = np.where(head, HEADLINE, EXPLORATORY)
    f["margin"] = [margin_for(study, m) for m in f["metric"]]
    f["p_value"] = [p_difference(d, s, k) for d, s, k in zip(f["diff"], f["se_test"], f["df"])]
    f["p_equivalence"] = [p_equivalence(d, s, mg, k) for d, s, mg, k in
                          zip(f["diff"], f["se_test"], f["margin"], f["df"])]
    looks = np.array([look_index(plan, int(n)) for n in f["n_seeds"]])
    f["look"] = np.where(head, looks + 1, 0)  # 1-based; exploratory rows are not looked at sequentially
    f["alpha_look"] = np.where(head, alpha_k[looks], ALPHA)
    p, pe = f["p_value"].to_numpy(float), f["p_equivalence"].to_numpy(float)
    pa, pea = np.full(len(f), np.nan), np.full(len(f), np.nan)
    if m_head:
        ak = f["alpha_look"].to_numpy(float)[head]
        pa[head] = _adjust(_weighted(p[head], ak), "holm")
        pea[head] = _adjust(_weighted(pe[head], ak), "holm")
    pa[~head] = _adjust(p[~head], "fdr_bh")
    pea[~head] = _adjust(pe[~head], "fdr_bh")
    f["p_adjusted"], f["p_equivalence_adjusted"] = pa, pea
    f["verdict"] = [verdict_of(d, a, b, h) for d, a, b, h in zip(f["diff"], pa, pea, higher)]

    # floors: the half-width an equivalence claim needs at the row's level (headline: the look's alpha
    # over the family, Holm's strictest step; exploratory: alpha), split into test-sample and seed parts
    last = float(alpha_k[-1]) / max(m_head, 1)
    cols = {c: [] for c in ("floor", "floor_samples", "floor_seeds", "floor_at_max", "floor_limit", "rho",
                            "seeds_needed")}
    for i, r in enumerate(f.itertuples()):
        c = comps[i]
        level = r.alpha_look / max(m_head, 1) if head[i] else ALPHA
        z = z_one_sided(level)
        floor = _isf(level, r.df) * r.se_test if math.isfinite(r.se_test) else math.nan
        if c is None or not math.isfinite(floor):
            for k, v in zip(cols, (floor, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)):
                cols[k].append(v)
            continue
        # the parts and projections from the unbiased components; the bootstrap's floor runs a little
        # wider once seeds are resampled too (it counts the per-run sample noise twice)
        vs, vd = c.var(r.n_seeds)
        scale = 1.0
        z_last = z_one_sided(last if head[i] else ALPHA)
        cols["floor"].append(floor)
        cols["floor_samples"].append(z * math.sqrt(vs))
        cols["floor_seeds"].append(z * math.sqrt(vd))
        cols["floor_at_max"].append(half_width(c, scale, max(plan.max, r.n_seeds), z_last))
        cols["floor_limit"].append(z_last * math.sqrt(scale * c.shared / c.n_samples))
        cols["rho"].append(c.rho)
        cols["seeds_needed"].append(seeds_needed(c, scale, r.diff, r.margin, last if head[i] else ALPHA))
    for k, v in cols.items():
        f[k] = v
    return f


# ---------------------------------------------------------------------------------------------
# what the runner asks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    model: str
    reference: str
    scenario: str
    n_seeds: int
    verdict: str
    open: bool  # inconclusive and more seeds could still resolve it
    reason: str


def is_test_bound(row, plan: SeedPlan, comp: Components | None, m_head: int) -> bool:
    """The test-sample part alone, at the seed cap, leaves the interval wider than the margin, and no
    difference of the observed size is in reach either: more seeds cannot resolve the row."""
    if comp is None or not math.isfinite(comp.rho) or not math.isfinite(row.se_test) or row.se_test == 0:
        return False
    scale = 1.0
    level = float(spending(plan)[-1]) / max(m_head, 1)
    n_max = max(plan.max, row.n_seeds)
    samples_at_max = z_one_sided(level) * math.sqrt(scale * comp.var(n_max)[0])
    total_at_max = float(sps.norm.isf(level / 2)) * math.sqrt(scale * sum(comp.var(n_max)))
    return samples_at_max >= row.margin and abs(row.diff) < total_at_max


def stop_reason(row, plan: SeedPlan, comp: Components | None, m_head: int) -> tuple[bool, str]:
    """(open, why) for one headline row."""
    if row.verdict != INCONCLUSIVE:
        return False, f"resolved ({row.verdict})"
    if row.n_seeds >= plan.max:
        return False, f"at the seed cap ({plan.max} seeds)"
    if is_test_bound(row, plan, comp, m_head):
        return False, f"test set too small to resolve ±{row.margin:g}"
    return True, f"open: {plan.max - row.n_seeds} more seed(s) allowed"


def decisions_of(frame: pd.DataFrame, study: Study, comps: list[Components | None]) -> list[Decision]:
    """One Decision per headline row of a decided frame (decide's output)."""
    plan = plan_of(study)
    head = frame["family"].to_numpy() == HEADLINE
    m_head = int(head.sum())
    out = []
    for i, r in enumerate(frame.itertuples()):
        if not head[i]:
            continue
        is_open, why = stop_reason(r, plan, comps[i], m_head)
        out.append(Decision(model=r.model, reference=r.reference, scenario=r.scenario, n_seeds=int(r.n_seeds),
                            verdict=r.verdict, open=is_open, reason=why))
    return out


def headline_decisions(res, cube) -> list[Decision]:
    """The headline family's decisions for the runner's rounds (only the headline rows are computed)."""
    from raymsa.report.compare import headline_frame

    frame, comps = headline_frame(res, cube)
    return decisions_of(frame, res.study, comps)

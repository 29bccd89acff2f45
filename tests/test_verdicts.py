"""Verdicts of comparisons.csv (raymsa/report/verdicts.py): the adjustment against statsmodels, alpha
spending, identical predictions, the resolution floor against its closed form, the runner's decisions,
and a small version of benchmarks/bench_verdicts.py's simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from raymsa.report import verdicts as V
from raymsa.report.compare import headline_frame
from raymsa.report.load import SeedPlan
from raymsa.report.simulate import Variances, fabricate, run_adaptive
from raymsa.report.stats import Cube

S2 = ("s1", "s2")


def test_holm_is_statsmodels_holm():
    rng = np.random.default_rng(0)
    for m in (3, 17):
        p = rng.uniform(0, 0.1, m) ** 2
        p[0] = p[-1]  # ties
        np.testing.assert_allclose(V.holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_spending_and_looks():
    plan = SeedPlan(3, 9, 2)
    assert plan.looks == (3, 5, 7, 9)
    a = V.spending(plan)
    assert a.sum() == pytest.approx(V.ALPHA) and (a > 0).all()
    # Pocock-type: alpha ln(1 + (e - 1) t) at t = 1/3
    assert a[0] == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 3))
    assert SeedPlan(3, 8, 2).looks == (3, 5, 7, 8)
    assert V.spending(SeedPlan(3, 3, 0)).tolist() == [V.ALPHA]
    assert [V.look_index(plan, n) for n in (1, 3, 4, 5, 9, 12)] == [0, 0, 0, 1, 3, 3]


def _twin_study(n_test=500, plan=SeedPlan(3, 9, 2)):
    """'a' is a copy of the reference: every prediction identical."""
    n = {(m, s): plan.initial for m in ("ref", "a") for s in S2}
    res = fabricate({"ref": 0.0, "a": 0.0}, S2, n, Variances(), n_test, np.random.default_rng(5), plan)
    for (m, sc, seed), rp in list(res.preds.items()):
        if m == "ref":
            res.preds[("a", sc, seed)] = rp
    r = res.results
    import pandas as pd

    res.results = pd.concat([r[r.model == "ref"], r[r.model == "ref"].assign(model="a")], ignore_index=True)
    return res


def test_identical_predictions_are_equivalent_with_diff_zero():
    res = _twin_study()
    cube = Cube(res, "test")
    f, _ = headline_frame(res, cube)
    assert len(f) == 2 and (f["diff"] == 0).all() and (f["se"] == 0).all()
    assert (f["verdict"] == "equivalent").all() and (f["p_equivalence_adjusted"] == 0).all()
    assert all(d.verdict == "equivalent" and not d.open for d in V.headline_decisions(res, cube))


@pytest.mark.parametrize("n_test,sd", [(1000, 0.4), (3000, 0.25)])
def test_floor_matches_closed_form_one_seed(n_test, sd):
    """One seed, no seed shift: the floor is z * sd / sqrt(N), z of the row's one-sided level
    (alpha / 2 headline rows, one look)."""
    plan = SeedPlan(1, 1, 0)
    n = {(m, s): 1 for m in ("ref", "a") for s in S2}
    res = fabricate({"ref": 0.0, "a": 0.0}, S2, n, Variances(sd=sd, rho=0.5, seed_sd=0.0), n_test,
                    np.random.default_rng(1), plan)
    f, _ = headline_frame(res, Cube(res, "test"))
    z = norm.isf(0.05 / 2)
    for r in f.itertuples():
        # the sample sd of the fabricated differences (clipping at 0 shrinks it a little)
        want = z * sd / math.sqrt(n_test)
        assert r.floor == pytest.approx(want, rel=0.10)
        assert r.floor_samples == pytest.approx(want, rel=0.10) and r.floor_seeds == 0
        assert math.isnan(r.rho)  # one seed: how much of it more seeds would shrink is unknown


def test_floor_split_across_seeds():
    """Several seeds: the part every seed shares (rho sd^2 / N) is the bound no number of seeds beats."""
    plan = SeedPlan(6, 6, 0)
    sd, rho, n_test = 0.4, 0.3, 2000
    n = {(m, s): 6 for m in ("ref", "a") for s in S2}
    res = fabricate({"ref": 0.0, "a": 0.0}, S2, n, Variances(sd=sd, rho=rho, seed_sd=0.0), n_test,
                    np.random.default_rng(2), plan)
    f, comps = headline_frame(res, Cube(res, "test"))
    z = norm.isf(0.05 / 2)
    for r, c in zip(f.itertuples(), comps):
        assert c.rho == pytest.approx(rho, abs=0.06)
        assert r.floor_limit == pytest.approx(z * math.sqrt(rho) * sd / math.sqrt(n_test), rel=0.15)
        want = z * sd * math.sqrt((rho + (1 - rho) / 6) / n_test)
        assert r.floor_samples == pytest.approx(want, rel=0.15)
        assert r.floor_seeds < 0.3 * r.floor_samples  # no seed shift was fabricated
        # the bootstrap's own floor is at least the model's (two-way resampling runs wide, not narrow)
        assert r.floor >= 0.95 * math.hypot(r.floor_samples, r.floor_seeds)


def _decision(models, n_test, var, n_seeds, plan):
    n = {(m, s): n_seeds for m in models for s in S2}
    res = fabricate(models, S2, n, var, n_test, np.random.default_rng(3), plan)
    return V.headline_decisions(res, Cube(res, "test"))


def test_decisions_say_why_a_row_stops():
    plan = SeedPlan(3, 9, 2)
    var = Variances(sd=0.43, rho=0.13, seed_sd=0.005)
    worse = _decision({"ref": 0.0, "a": 0.2}, 2000, var, 3, plan)
    assert all(d.verdict == "worse" and not d.open and d.reason == "resolved (worse)" for d in worse)
    small = _decision({"ref": 0.0, "a": 0.0}, 300, var, 3, plan)
    assert all(not d.open and d.reason == "test set too small to resolve ±0.02" for d in small)
    mid = _decision({"ref": 0.0, "a": 0.0}, 3000, Variances(sd=0.43, rho=0.13, seed_sd=0.03), 3, plan)
    assert any(d.open for d in mid)
    assert all(d.open == (d.verdict == "inconclusive") and d.n_seeds == 3 for d in mid)
    cap = _decision({"ref": 0.0, "a": 0.0}, 3000, Variances(sd=0.43, rho=0.13, seed_sd=0.03), 9, plan)
    assert all(not d.open for d in cap)
    assert any(d.reason == "at the seed cap (9 seeds)" for d in cap)


def test_small_simulation_controls_false_claims_and_has_power():
    """benchmarks/bench_verdicts.py in small: 25 null studies with 4 headline rows each and adaptive
    seeding. Unadjusted 5 % tests on 4 rows would make a false claim in ~19 % of studies (about 5 of
    25; P(<= 3) = 0.28), the procedure in <= 5 % (P(<= 3) = 0.97). Power at 3 x the margin here (two
    seeds to start leave few degrees of freedom); the benchmark measures 1.5 x at its own sizes."""
    plan = SeedPlan(2, 4, 2)
    var = Variances(sd=0.2, rho=0.13, seed_sd=0.004)
    false_claims = sum(any(v in ("better", "worse") for v in
                           run_adaptive({"ref": 0.0, "a": 0.0, "b": 0.0}, S2, plan, var, 400, k).verdicts)
                       for k in range(25))
    assert false_claims <= 3
    called = [v for k in range(10) for v in
              run_adaptive({"ref": 0.0, "a": 0.06, "b": 0.06}, S2, plan, var, 400, 1000 + k).verdicts]
    assert sum(v == "worse" for v in called) >= 0.6 * len(called) and "better" not in called


def _tuned_and_default(delta: float, twin: bool = False):
    """'a' (tuned) and 'a_default' (its default arm) against 'ref'; twin: a's predictions are a_default's."""
    import dataclasses

    import pandas as pd

    plan = SeedPlan(3, 3, 0)
    models = {"ref": 0.0, "a": delta, "a_default": 0.0}
    n = {(m, s): 3 for m in models for s in S2}
    res = fabricate(models, S2, n, Variances(sd=0.43, rho=0.13, seed_sd=0.002), 3000, np.random.default_rng(7), plan)
    res.study = dataclasses.replace(res.study, default_arms={"a": "a_default"})
    if twin:
        for (m, sc, seed), rp in list(res.preds.items()):
            if m == "a_default":
                res.preds[("a", sc, seed)] = rp
        r = res.results
        res.results = pd.concat([r[r.model != "a"], r[r.model == "a_default"].assign(model="a")], ignore_index=True)
    # s1's search: 4 trials, the best (lowest objective) the warm start from s2
    res.trials[("a", "s1")] = pd.DataFrame({"objective": [0.9, 1.0, 1.1, 1.2],
                                            "warm_start": ["s2", None, None, None]})
    return res


@pytest.mark.parametrize("delta, twin, words", [
    (-0.2, False, "it bought a gain of 0."),
    (0.2, False, "it cost 0."),
    (0.0, True, "it bought nothing beyond ±0.020: tuned and default are equivalent"),
])
def test_summary_says_per_scenario_what_the_search_bought(delta, twin, words):
    from raymsa.report.compare import comparisons_with_components
    from raymsa.report.tables import search_bought_sentences, summary_facts
    from raymsa.report.stats import robustness_frame

    res = _tuned_and_default(delta, twin)
    cube = Cube(res, "test")
    comp, _ = comparisons_with_components(res, cube)
    said = search_bought_sentences(res, comp)
    assert [s.split(":", 1)[0] for s in said] == [f"What the search bought under {s}" for s in S2]
    assert all(words in s for s in said), said
    # the trials it was bought with, only where the search left trials.csv
    assert "(best of 4 trials, one a warm start; the winner is the warm start from s2)" in said[0]
    assert "best of" not in said[1]
    # the numbers are the headline row's, and the Summary carries the sentences
    row = comp[(comp.model == "a") & (comp.reference == "a_default") & (comp.family == "headline")
               & (comp.scenario == "s1")].iloc[0]
    assert f"{row['diff']:+.3f} [95 % CI {row['ci_low']:+.3f}, {row['ci_high']:+.3f}]" in said[0]
    facts = summary_facts(res, cube, robustness_frame(res, cube, ("MAE",)), comp)
    assert all(s in facts for s in said)


def test_no_search_sentence_without_a_default_arm():
    from raymsa.report.compare import comparisons_with_components
    from raymsa.report.tables import search_bought_sentences

    res = fabricate({"ref": 0.0, "a": 0.0}, S2, {(m, s): 3 for m in ("ref", "a") for s in S2}, Variances(), 500,
                    np.random.default_rng(1), SeedPlan(3, 3, 0))
    comp, _ = comparisons_with_components(res, Cube(res, "test"))
    assert not comp.empty and search_bought_sentences(res, comp) == []

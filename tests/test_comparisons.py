"""comparisons.csv on a fake study whose eval.csv is computed from its preds.npz, so the paired
differences, intervals and verdicts can be recomputed independently here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t
from statsmodels.stats.multitest import multipletests

from raymsa.metrics import mmsa_metrics
from raymsa.report import build_report

SEEDS = (1, 2, 3)
LEVELS = (0.0, 0.5, 1.0)
N = 200


def make_study(root: Path, noise: dict[str, float]) -> Path:
    """Models predict label + level-scaled noise of their own size; one numeric scenario, 3 seeds."""
    d = root / "study"
    d.mkdir()
    (d / "study.json").write_text(json.dumps({
        "name": "cmp", "dataset": "mosi", "models": list(noise), "reference_model": "ref", "seeds": list(SEEDS),
        "scenarios": [{"name": "intra", "kind": "intra", "levels": list(LEVELS)}]}))
    y = np.random.default_rng(0).uniform(-3, 3, N).round(1)
    for m, sd in noise.items():
        for s in SEEDS:
            rng = np.random.default_rng(1000 * s + len(m))
            preds = np.stack([y + rng.normal(0, sd * (1 + lv), N) for lv in LEVELS]).astype(np.float32)
            rd = d / "runs" / f"{m}__intra__seed{s}"
            rd.mkdir(parents=True)
            rows = [(m, "intra", "intra", f"{lv:g}", s, "test", k, v, "default")
                    for lv, p in zip(LEVELS, preds) for k, v in mmsa_metrics(p, y.astype(np.float32), "mosi").items()]
            pd.DataFrame(rows, columns=["model", "scenario", "eval_scenario", "level", "seed", "split", "metric",
                                        "value", "config_id"]).to_csv(rd / "eval.csv", index=False)
            np.savez(rd / "preds.npz", eval_scenario=np.array(["intra"] * 3), level=np.array([f"{lv:g}" for lv in LEVELS]),
                     pred=preds, labels=y.astype(np.float32), index=np.arange(N))
    return d


def check_rows(d: Path) -> pd.DataFrame:
    """Recompute every diff from results.csv and check interval and verdict against it."""
    comp = pd.read_csv(d / "report" / "comparisons.csv")
    res = pd.read_csv(d / "report" / "results.csv", dtype={"level": str})
    x = np.array(LEVELS)
    for _, r in comp.iterrows():
        per_seed = {}
        for m in (r["model"], r["reference"]):
            g = res[(res.model == m) & (res.metric == r["metric"]) & (res.split == "test")]
            v = g.pivot(index="seed", columns="level", values="value")[[f"{lv:g}" for lv in LEVELS]].to_numpy()
            if r["summary"] == "mean over levels":
                per_seed[m] = v.mean(1)
            elif r["summary"] == "AUILC":
                per_seed[m] = np.trapezoid(v, x, axis=1)
            else:
                per_seed[m] = (v[:, 1:] - v[:, :1]).sum(1)
        d_seed = per_seed[r["model"]] - per_seed[r["reference"]]
        higher = r["metric"] != "MAE"
        if r["summary"] == "effective robustness" and not higher:
            d_seed = -d_seed
        assert r["diff"] == pytest.approx(d_seed.mean(), abs=1e-12)
        assert r["ci_low"] <= r["diff"] <= r["ci_high"]
        assert r["n_seeds"] == 3 and r["n_samples"] == N
        # the tests on the bootstrap SE: Wald two-sided, and TOST against the metric's margin
        margin = 0.02 if r["metric"] == "MAE" else 0.01
        assert r["margin"] == margin
        # SE: the bootstrap's, raised to the unbiased moment SE where larger; t with Satterthwaite df
        assert r["se_test"] >= r["se"] and 2 <= r["df"]
        assert r["p_value"] == pytest.approx(2 * t.sf(abs(r["diff"]) / r["se_test"], r["df"]), rel=1e-9)
        assert r["p_equivalence"] == pytest.approx(max(t.sf((r["diff"] + margin) / r["se_test"], r["df"]),
                                                       t.sf((margin - r["diff"]) / r["se_test"], r["df"])), rel=1e-9)
    # headline family: each model vs the reference on the objective (MAE), mean over levels; Holm there,
    # Benjamini-Hochberg on the rest (one look: no sequential weight)
    head = comp["family"] == "headline"
    assert sorted(comp.loc[head, "model"]) == sorted(m for m in comp["model"].unique())
    assert (comp.loc[head, "metric"] == "MAE").all() and (comp.loc[head, "summary"] == "mean over levels").all()
    for fam, method in ((head, "holm"), (~head, "fdr_bh")):
        for col, adj in (("p_value", "p_adjusted"), ("p_equivalence", "p_equivalence_adjusted")):
            want = multipletests(comp.loc[fam, col].to_numpy(), method=method)[1]
            np.testing.assert_allclose(comp.loc[fam, adj].to_numpy(), want, rtol=1e-9)
    for _, r in comp.iterrows():
        better_side = True if r["summary"] == "effective robustness" else r["metric"] != "MAE"
        want = ("equivalent" if r["p_equivalence_adjusted"] <= 0.05 else
                ("better" if (r["diff"] > 0) == better_side else "worse") if r["p_adjusted"] <= 0.05 else
                "inconclusive")
        assert r["verdict"] == want
    return comp


def test_intervals_verdicts_and_power(tmp_path):
    d = make_study(tmp_path, {"good": 0.3, "same": 1.0, "ref": 1.0})
    build_report(d)
    comp = check_rows(d).set_index(["model", "summary", "metric"])
    good = comp.loc[("good", "mean over levels", "MAE")]
    assert good["verdict"] == "better" and good["p_improvement"] == 1.0 and good["diff"] < -0.5
    same = comp.loc[("same", "mean over levels", "MAE")]
    # noise sd 1 per sample over 200 samples: far too wide for +-0.02 either way
    assert same["verdict"] == "inconclusive" and same["floor"] > 0.02
    # power: the MDE is 2.80 bootstrap SEs, larger than the observed difference
    assert same["mde_80"] == pytest.approx(2.8016 * same["se"], rel=1e-3) and same["mde_80"] > abs(same["diff"])
    # more seeds would be needed than the 3 run (or none would do)
    assert not same["seeds_needed"] <= 3
    md = (d / "report" / "report.md").read_text()
    assert "intra, test MAE, good vs ref: mean over levels difference" in md and "test samples (resampled" in md
    assert "Holm-adjusted p-values, family-wise error 5 %" in md and "Headline family" in md
    # rebuilding gives the same bytes (seeded bootstrap)
    before = (d / "report" / "comparisons.csv").read_bytes()
    build_report(d)
    assert (d / "report" / "comparisons.csv").read_bytes() == before


def test_without_preds_only_seeds_are_resampled(tmp_path):
    d = make_study(tmp_path, {"same": 1.0, "ref": 1.0})
    build_report(d)
    with_samples = pd.read_csv(d / "report" / "comparisons.csv")
    for f in d.glob("runs/*/preds.npz"):
        f.unlink()
    build_report(d)
    seeds_only = pd.read_csv(d / "report" / "comparisons.csv")
    assert (seeds_only["n_samples"] == 0).all()
    pd.testing.assert_series_equal(with_samples["diff"], seeds_only["diff"])
    # resampling test samples as well widens the intervals
    w1 = (with_samples["ci_high"] - with_samples["ci_low"]).to_numpy()
    w0 = (seeds_only["ci_high"] - seeds_only["ci_low"]).to_numpy()
    assert (w1 > w0).mean() > 0.8
    assert "not test samples (no preds.npz" in (d / "report" / "report.md").read_text()


@pytest.mark.parametrize("mode", ["min", "max"])
def test_tuning_curve_is_the_mean_best_over_every_subset(mode):
    """Tang et al.'s estimator equals the exact mean (and std) of the best of every n-subset."""
    import itertools

    from raymsa.report.tuning import expected_best

    v = np.random.default_rng(3).normal(size=7)
    n, mean, std = expected_best(np.append(v, np.nan), mode)
    best = min if mode == "min" else max
    assert n.tolist() == list(range(1, 8))
    for k in n:
        b = [best(c) for c in itertools.combinations(v, k)]
        assert mean[k - 1] == pytest.approx(np.mean(b)) and std[k - 1] == pytest.approx(np.std(b), abs=1e-7)


def test_report_shows_tuning_curves_from_trials_csv(tmp_path):
    d = make_study(tmp_path, {"good": 0.3, "ref": 1.0})
    for m in ("good", "ref"):
        sd = d / "search" / f"{m}__intra"
        (sd / "repeat1").mkdir(parents=True)
        pd.DataFrame({"trial": [1, 2, 3], "objective": [0.9, 0.8, 1.0]}).to_csv(sd / "trials.csv", index=False)
        pd.DataFrame({"trial": [1], "objective": [0.7]}).to_csv(sd / "repeat1" / "trials.csv", index=False)
    build_report(d)
    t = pd.read_csv(d / "report" / "tuning.csv")
    g = t[t.model == "good"].set_index("n_trials")
    # repeats pooled: 4 trials; best of 1 = their mean, best of 4 = the minimum
    assert g.loc[1, "expected_best"] == pytest.approx(0.85) and g.loc[4, "expected_best"] == pytest.approx(0.7)
    assert (d / "report" / "plots" / "tuning.png").exists()
    assert "(plots/tuning.png)" in (d / "report" / "report.md").read_text()

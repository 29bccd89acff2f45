"""Report figures (PNG). Built on matplotlib's object API with the Agg canvas, never pyplot, so
building a report changes no global matplotlib state and needs no display."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from raymsa.report.load import BestConfig, Scenario, StudyResults, level_display, subset_display
from raymsa.report.stats import COMPLETE, Cube, level_stats, subset_average
from raymsa.report.tables import HEADLINE, cross_matrix, name, scenario_label, unit_name

DPI = 110
XLABEL = {
    "intra": "missing rate r",
    "inter": "inter-modality missing rate",
    "mixed": "missing rate r (frames and whole modalities)",
    "burst": "burst length (fraction of frames)",
    "noise": "noise std",
    "imbalanced": "severity r (per-modality missing rates r x modality_scale)",
}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
REF_COLOR = "#555555"


def safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _new(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # no 'Software' stamp: identical inputs give identical bytes across matplotlib versions too
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def _style(res: StudyResults) -> dict[str, dict]:
    """Per model: colour, line style and legend label; the reference model dashed grey."""
    out, i = {}, 0
    for m in res.study.all_models:
        if m == res.study.reference_model:
            out[m] = {"color": REF_COLOR, "ls": "--", "label": f"{m} (reference)", "marker": "s"}
        else:
            out[m] = {"color": COLORS[i % len(COLORS)], "ls": "-", "label": m, "marker": "o"}
            i += 1
    return out


def _scale(metric: str) -> float:
    return 1.0 if metric in ("MAE", "Corr") else 100.0


def _seeds_text(res: StudyResults) -> str:
    n = len(res.study.seeds)
    return f"mean ± std over {n} seed{'s' if n != 1 else ''}"


def _finish(fig: Figure, axes, res: StudyResults, sc: Scenario, n_models: int, path: Path) -> None:
    """One legend below the panels, the study's title, saved."""
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(n_models, 4), frameon=False)
    fig.suptitle(f"{res.study.name}: {scenario_label(sc)}, test, {_seeds_text(res)}", fontsize=13)
    _save(fig, path)


def curves(res: StudyResults, cube: Cube, sc: Scenario, path: Path, ceiling=None) -> bool:
    """2×2 robustness curves (headline metrics vs level), one line per model, ± std band; with a
    ceiling (raymsa.report.ceiling.Ceiling), the Bayes-optimal curve in black."""
    style = _style(res)
    models = [m for m in res.study.all_models if cube.has(m, sc.name)]
    if not models:
        return False
    x = np.asarray(sc.x, dtype=float)
    fig = _new((11, 8))
    axes = fig.subplots(2, 2).ravel()
    for ax, metric in zip(axes, HEADLINE[res.study.dataset]):
        k = _scale(metric)
        for m in models:
            st = level_stats(cube.grid(m, sc.name, sc.name, metric, sc.levels))
            mean = np.array([s.mean for s in st]) * k
            std = np.array([s.std for s in st]) * k
            s = style[m]
            ax.plot(x, mean, color=s["color"], ls=s["ls"], marker=s["marker"], ms=4, lw=1.8, label=s["label"])
            ax.fill_between(x, mean - std, mean + std, color=s["color"], alpha=0.18, lw=0)
        if ceiling is not None and ceiling.has(sc):
            best = np.array([s.mean for s in level_stats(ceiling.grid(sc, metric))]) * k
            ax.plot(x, best, color="black", ls=":", marker="^", ms=4, lw=1.8, label="Bayes ceiling")
        better = "lower is better" if metric == "MAE" else "higher is better"
        ax.set_title(f"{name(metric)} ({better})", fontsize=11)
        ax.set_xlabel(XLABEL.get(sc.kind, "level"))
        ax.set_ylabel(unit_name(metric))
        ax.set_xticks(x)
        ax.set_xticklabels([level_display(lv) for lv in sc.levels], fontsize=8)
        ax.grid(alpha=0.3)
    _finish(fig, axes, res, sc, len(models), path)
    return True


def subset_bars(res: StudyResults, cube: Cube, sc: Scenario, path: Path) -> bool:
    """2×2 grouped bars: per subset (six incomplete, Avg, complete) one bar per model, std error bars."""
    style = _style(res)
    models = [m for m in res.study.all_models if cube.has(m, sc.name)]
    if not models:
        return False
    inc = [lv for lv in sc.levels if lv != COMPLETE]
    comp = [lv for lv in sc.levels if lv == COMPLETE]
    groups = [subset_display(lv) for lv in inc] + ["Avg"] + [subset_display(lv) for lv in comp]
    xs = np.arange(len(groups), dtype=float)
    width = 0.8 / len(models)
    fig = _new((12, 8))
    axes = fig.subplots(2, 2).ravel()
    for ax, metric in zip(axes, HEADLINE[res.study.dataset]):
        k = _scale(metric)
        for i, m in enumerate(models):
            g = cube.grid(m, sc.name, sc.name, metric, tuple(inc + comp))
            st = level_stats(g)
            st = st[:len(inc)] + [subset_average(g)] + st[len(inc):]
            mean = np.array([s.mean for s in st]) * k
            std = np.array([s.std for s in st]) * k
            s = style[m]
            ax.bar(xs - 0.4 + width * (i + 0.5), mean, width, yerr=std, capsize=2, color=s["color"],
                   alpha=0.85, label=s["label"], error_kw={"lw": 0.8})
        if metric != "MAE":  # accuracies: zoom on the range the bars span
            # a bar with no runs behind it is NaN: zoom on the others, or not at all
            heights = [h for h in (p.get_height() for p in ax.patches) if np.isfinite(h)]
            if heights:
                ax.set_ylim(max(0.0, min(heights) - 10), None)
        ax.axvline(len(inc) - 0.5, color="#999", lw=0.8, ls=":")
        ax.axvline(len(inc) + 0.5, color="#999", lw=0.8, ls=":")
        better = "lower is better" if metric == "MAE" else "higher is better"
        ax.set_title(f"{name(metric)} ({better})", fontsize=11)
        ax.set_xlabel("available modalities")
        ax.set_ylabel(unit_name(metric))
        ax.set_xticks(xs)
        ax.set_xticklabels(groups)
        ax.grid(axis="y", alpha=0.3)
    _finish(fig, axes, res, sc, len(models), path)
    return True


def cross_heatmap(res: StudyResults, cube: Cube, model: str, path: Path) -> bool:
    """Trained-for × evaluated-under test MAE heatmap with annotated cells, diagonal boxed."""
    rows, cols, cells = cross_matrix(res, cube, model)
    if not rows:
        return False
    mean = np.array([[c.mean for c in r] for r in cells], dtype=float)
    fig = _new((1.9 * len(cols) + 2.6, 1.0 * len(rows) + 2.0))
    ax = fig.subplots()
    masked = np.ma.masked_invalid(mean)
    im = ax.imshow(masked, cmap=colormaps["viridis_r"].with_extremes(bad="#dddddd"), aspect="auto")
    finite = mean[np.isfinite(mean)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0, 1)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            cell = cells[i][j]
            if cell.ok:
                text = f"{cell.mean:.3f}\n± {cell.std:.3f}"
                if cell.n < len(res.study.seeds):
                    text += f"\n(n={cell.n})"
                light = hi > lo and (cell.mean - lo) / (hi - lo) > 0.5  # viridis_r: dark at high values
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if light else "black")
            else:
                ax.text(j, i, "no data", ha="center", va="center", fontsize=8, color="#666")
            if r == c:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#e41a1c", lw=2.5))
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_xlabel("evaluated under scenario")
    ax.set_ylabel("trained for scenario")
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.set_label("test MAE (lower is better)")
    ax.set_title(f"{model}: cross-scenario test MAE\n(mean over eval levels; red box = trained-for scenario)",
                 fontsize=11)
    _save(fig, path)
    return True


def importances(model: str, bests: list[BestConfig], path: Path) -> bool:
    """One horizontal bar panel per scenario with Optuna importances."""
    bests = [b for b in bests if b.importances]
    if not bests:
        return False
    n = len(bests)
    nk = max(len(b.importances) for b in bests)
    fig = _new((min(4.2 * n, 14), 0.35 * nk + 1.6))
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False).ravel())
    for ax, b in zip(axes, bests):
        items = sorted(b.importances.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.set_title(b.scenario, fontsize=10)
        ax.set_xlabel("importance")
        ax.set_xlim(0, max(1e-9, max(v for _, v in items)) * 1.1)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{model}: Optuna parameter importances per scenario", fontsize=11)
    _save(fig, path)
    return True


def comparisons_plot(res: StudyResults, comp, path: Path) -> bool:
    """Forest plot of comparisons.csv's MAE rows: paired difference and its 95 % interval per
    (model, scenario, summary); left of 0 = lower MAE than the reference (effective robustness: right
    of 0 = loses less)."""
    c = comp[comp["metric"] == "MAE"] if not comp.empty else comp
    if c.empty:
        return False
    panels = [("difference in MAE (model - reference)", c[c["summary"] != "effective robustness"]),
              ("MAE effective robustness (positive = loses less)", c[c["summary"] == "effective robustness"])]
    panels = [(t, d) for t, d in panels if not d.empty]
    n = max(len(d) for _, d in panels)
    fig = _new((6.0 * len(panels), 0.8 + 0.32 * n))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = {"better": "#2ca02c", "worse": "#d62728", "equivalent": "#1f77b4", "inconclusive": "#555555"}
    for ax, (title, d) in zip(axes, panels):
        y = np.arange(len(d))[::-1]
        for yi, (_, r) in zip(y, d.iterrows()):
            lo, hi = r["ci_low"], r["ci_high"]
            col = colors.get(r["verdict"], "#555555")
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [yi, yi], color=col, lw=2)
            ax.plot([r["diff"]], [yi], "o", color=col)
        ax.axvline(0.0, color="#999999", lw=1, ls="--")
        ax.set_yticks(y, [f"{r['model']} vs {r['reference']} · {r['scenario']} · {r['summary']}"
                          for _, r in d.iterrows()], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("95 % paired bootstrap CI (unadjusted; verdicts adjusted)", fontsize=8)
    _save(fig, path)
    return True


def tuning_curves(res: StudyResults, tuning, path: Path) -> bool:
    """One panel per scenario: expected best validation objective vs trials, a line per model,
    band = ± one std of the best of n (Dodge et al. 2019; Tang et al. 2020's unbiased estimator)."""
    if tuning.empty:
        return False
    scen = [sc.name for sc in res.study.scenarios if sc.name in set(tuning["scenario"])]
    if not scen:
        return False
    style = _style(res)
    fig = _new((min(max(6.0, 4.2 * len(scen)), 14), 3.6))
    axes = fig.subplots(1, len(scen), squeeze=False)[0]
    obj = res.study.objective
    for ax, sname in zip(axes, scen):
        t = tuning[tuning["scenario"] == sname]
        for m in res.study.all_models:
            g = t[t["model"] == m]
            if g.empty:
                continue
            st = style[m]
            x, y, s = g["n_trials"].to_numpy(), g["expected_best"].to_numpy(), g["std"].to_numpy()
            ax.plot(x, y, color=st["color"], ls=st["ls"], marker=st["marker"], ms=3, label=st["label"])
            ax.fill_between(x, y - s, y + s, color=st["color"], alpha=0.15, lw=0)
        ax.set_title(sname, fontsize=10)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"expected best valid {obj.get('metric', 'objective')}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Tuning curves: expected best of n trials (± std)", fontsize=11)
    _save(fig, path)
    return True

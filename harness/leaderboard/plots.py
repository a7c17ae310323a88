"""Leaderboard plots: a metric against KL, one colour-blind-safe colour and marker per method, each method's
points joined along its swept knob only, 95% intervals as error bars, axes fitted to the rows (log-x where KL
spans decades) and the reference curves of docs/formulas.md ("Reference curves (leaderboard plots)")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import targets
from harness.leaderboard.runs import PUBLISHED, row_hash
from harness.metrics import QUANTITIES, SOURCES, metric_range

# Okabe & Ito (2008), "Color Universal Design": distinguishable under every common colour-vision deficiency;
# ordered so that a board's methods in name order get far-apart hues, each with its own marker too.
# Okabe-Ito's eight, then four of Tol's muted palette: a board of up to 12 methods repeats no colour.
COLOURS = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442",
    "#882255", "#44AA99", "#999933", "#AA4499",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


KL_ROUNDING = 1e-12  # nats: an exact KL this small is 0 up to floating-point rounding (pi_ref against itself)


def styles(methods: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per method of a board, in name order."""
    return {m: (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(sorted(methods))}


def curves(kl_max: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference curves: best-of-n in the continuous limit (win rate n/(n+1) at KL log n - (n-1)/n, n >= 1)
    and the win-rate-optimal tilt pi ∝ pi_ref exp(c Q) (harness.targets)."""
    n = np.logspace(0, np.log10(max(np.exp(kl_max + 1), 2.0)), 400)
    c = np.logspace(-3, np.log10(60), 400)
    return {
        "best-of-n theory": (np.log(n) - (n - 1) / n, n / (n + 1)),
        "optimal tilt": (targets.tilt_kl(c), targets.tilt_win_rate(c)),
    }


def _swept(rows: pd.DataFrame) -> tuple[str | None, list[pd.DataFrame]]:
    """The knob a method's rows sweep (the numeric varying one with most values) and its curves: the rows that
    agree on every other knob, ordered by the swept one. A single row is its own curve, and so is each row where no
    numeric knob varies (rows apart in a name or a variant are not points along a curve)."""
    knobs = [json.loads(k) for k in rows["knobs"]]
    keys = sorted({k for kn in knobs for k in kn})
    values = {k: {json.dumps(kn.get(k), sort_keys=True) for kn in knobs} for k in keys}
    varying = [k for k in keys if len(values[k]) > 1]
    numeric = [k for k in varying if all(isinstance(kn.get(k), int | float) for kn in knobs)]
    if not numeric:
        return None, [rows.iloc[[i]] for i in range(len(rows))]
    swept = max(numeric, key=lambda k: len(values[k]))  # the first of equals, in name order
    rest = [k for k in varying if k != swept]
    groups: dict[str, list[int]] = {}
    for i, kn in enumerate(knobs):
        groups.setdefault(json.dumps([kn.get(k) for k in rest], sort_keys=True), []).append(i)

    def order(i: int) -> tuple[int, Any]:
        v = knobs[i].get(swept)
        return (0, v) if isinstance(v, int | float) else (1, json.dumps(v, sort_keys=True))

    return swept, [rows.iloc[sorted(ix, key=order)] for _, ix in sorted(groups.items())]


def _errors(d: pd.DataFrame, col: str) -> np.ndarray:
    lo = (d[col] - d[f"{col}_lo"]).fillna(0.0).clip(lower=0.0)
    hi = (d[f"{col}_hi"] - d[col]).fillna(0.0).clip(lower=0.0)
    return np.vstack([lo.to_numpy(float), hi.to_numpy(float)])


def _limits(lo: np.ndarray, hi: np.ndarray, bounds: tuple[float, float]) -> tuple[float, float]:
    """An axis range covering [lo, hi] with a margin, inside the metric's range (plus the margin)."""
    a, b = float(np.nanmin(lo)), float(np.nanmax(hi))
    pad = 0.06 * (b - a) if b > a else 0.05 * max(abs(a), 1.0)
    return max(a - pad, bounds[0] - pad), min(b + pad, bounds[1] + pad)


def plot(df: pd.DataFrame, task: str, y: str, path: Path, runs: list[dict[str, Any]] | None = None) -> None:
    """`y` (reward, gold_reward or win_rate) against KL per method. The win-rate plot adds the theory curves,
    the reward plots the best-of-n curve of the first reference pool among `runs` (Monte Carlo, Beirami KL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    fig, ax = plt.subplots(figsize=(8.5, 5), dpi=110)
    shown = df[df["kl"].notna() & df[y].notna()]
    left_out = df[~df.index.isin(shown.index)]
    style = styles(sorted(df["method"].unique()))
    for (method, origin), rows in shown.groupby(["method", "origin"], sort=True):
        colour, marker = style[method]
        published = origin == PUBLISHED
        swept, lines = _swept(rows)
        name = f"{method} (published)" if published else method
        label = f"{name}, by {swept}" if any(len(d) > 1 for d in lines) else name
        for i, d in enumerate(lines):
            ax.errorbar(
                d["kl"],
                d[y],
                xerr=_errors(d, "kl"),
                yerr=_errors(d, y),
                fmt="--" if published else "-",
                marker=marker,
                color=colour,
                markerfacecolor="white" if published else colour,
                label=label if i == 0 else None,
                capsize=2,
                markersize=6,
                linewidth=1.2,
                elinewidth=0.8,
                alpha=0.95,
            )
    x_lo, x_hi = shown["kl_lo"].fillna(shown["kl"]), shown["kl_hi"].fillna(shown["kl"])
    y_lo, y_hi = shown[f"{y}_lo"].fillna(shown[y]), shown[f"{y}_hi"].fillna(shown[y])
    scale = ""
    if len(shown):
        positive = shown.loc[shown["kl"] > KL_ROUNDING, "kl"]  # a KL within rounding of 0 does not set the scale
        log_x = len(positive) > 1 and positive.max() / positive.min() > 30
        xlim = _limits(x_lo.to_numpy(float), x_hi.to_numpy(float), metric_range("kl"))
        ylim = _limits(y_lo.to_numpy(float), y_hi.to_numpy(float), metric_range(y))
        if log_x:
            threshold = 10 ** np.floor(np.log10(positive.min()))
            ax.set_xscale("symlog", linthresh=threshold, linscale=0.4)
            scale = f"; log scale above {threshold:g}"
            xlim = (0.0 if x_lo.min() <= threshold else x_lo.min() / 1.3, x_hi.max() * 1.3)
        kl_max = xlim[1]
        if y == "win_rate":
            for (name, (kx, wy)), line in zip(curves(kl_max).items(), ("--", ":"), strict=True):
                keep = (kx <= kl_max) & (wy >= ylim[0]) & (wy <= ylim[1])
                ax.plot(kx[keep], wy[keep], line, color="0.35", linewidth=1, label=name, zorder=1)
        elif runs:
            curve = next((r["results"]["bon_curve"] for r in runs if r["results"].get("bon_curve")), None)
            if curve and all(y in p for p in curve):
                kx = np.array([p["kl_bon_beirami"]["mean"] for p in curve])
                ry = np.array([p[y]["mean"] for p in curve])
                keep = kx <= kl_max
                ax.plot(kx[keep], ry[keep], "--", color="0.35", linewidth=1, label="best-of-n (pool, Beirami KL)")
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
    kl_sources = ", ".join(SOURCES[s].word for s in sorted(set(shown["kl_source"])))
    y_sources = ", ".join(SOURCES[s].word for s in sorted(set(shown[f"{y}_source"])))
    ax.set_xlabel(f"{QUANTITIES['kl'].label}, nats ({kl_sources}{scale})")
    ax.set_ylabel(f"{QUANTITIES[y].label} ({y_sources})")
    ax.set_title(f"{task}: {QUANTITIES[y].header} against KL (95% intervals)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if len(left_out):
        names = "; ".join(f"{r.method} {r.setting}" for r in left_out.itertuples())
        fig.text(0.01, 0.01, f"not plotted (no KL or no {QUANTITIES[y].label}): {names}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


# train_log.jsonl keys -> axis labels: what each method logs is in docs/results.md ("Trained runs")
TRAINING_AXES = {"reward": "training reward, as logged", "kl": "KL, nats, as logged"}


def trained_rows(df: pd.DataFrame, runs: list[dict[str, Any]]) -> list[tuple[pd.Series, list[list[dict[str, Any]]]]]:
    """Each row of the board whose runs logged training, in the board's order, with the train logs of its seeds."""
    logs: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for run in sorted(runs, key=lambda r: r["config"]["seed"]):
        if run.get("train_log"):
            logs.setdefault((row_hash(run), run["origin"]), []).append(run["train_log"])
    return [(r, logs[(r.config_hash, r.origin)]) for _, r in df.iterrows() if (r.config_hash, r.origin) in logs]


def training_plot(df: pd.DataFrame, task: str, path: Path, runs: list[dict[str, Any]]) -> None:
    """Each trained row's logged reward and KL against the training step (from its runs' train_log.jsonl, means
    over each log window: the proxy reward of the training samples (a method's own training reward in runs
    stored before log windows), and the k1 KL from pi_ref (from the anchor, in runs of a method with one stored
    before `kl_anchor` was logged beside it); see docs/results.md): one line per row, the mean over its seeds,
    shaded between the lowest and the highest seed; one row of panels per method. A plateau, or its absence,
    shows at the right end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    rows = trained_rows(df, runs)
    methods = sorted({r.method for r, _ in rows})
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.8)
    fig, axes = plt.subplots(
        len(methods), 2, figsize=(11, 2.6 * len(methods) + 0.6), dpi=100, squeeze=False, sharex="row"
    )
    for m, method in enumerate(methods):
        mine = [(r, logs) for r, logs in rows if r.method == method]
        colours = sns.color_palette("viridis", len(mine))
        for (row, logs), colour in zip(mine, colours, strict=True):
            name = (
                f"{row.setting} ({'published' if row.origin == PUBLISHED else len(logs)} seed{'s' * (len(logs) > 1)})"
            )
            for ax, key in zip(axes[m], TRAINING_AXES, strict=True):
                steps, values = _seed_curves(logs, key)
                if not len(steps):
                    continue
                ax.plot(steps, values.mean(0), color=colour, linewidth=1.3, label=name)
                if len(values) > 1:
                    ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.18, linewidth=0)
        for ax, label in zip(axes[m], TRAINING_AXES.values(), strict=True):
            ax.set_title(f"{method}: {label.split(',')[0]}", fontsize=9, loc="left")
            ax.set_ylabel(label)
            ax.set_xlabel("training step")
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # three-digit steps stay apart
        axes[m][1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(
        f"{task}: training curves, mean over seeds (shaded: seed range); reward and KL of the training samples "
        "as logged (docs/results.md)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def _seed_curves(logs: list[list[dict[str, Any]]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The steps that every seed logged `key` at, and the seeds' values there (seeds x steps)."""
    per_seed = [{e["step"]: e[key] for e in log if key in e} for log in logs]
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    return np.array(steps), np.array([[s[t] for t in steps] for s in per_seed], dtype=float)

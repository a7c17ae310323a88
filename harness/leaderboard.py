"""Leaderboards as data: one row per (method, setting) of a task, aggregated over seeds from the results store,
with Pareto flags, a ranking at matched KL, reward-vs-KL and win-rate-vs-KL plots, and a published directory
(leaderboard.md, leaderboard.csv, index.html, the plots and the raw results behind them)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness import store, targets

# The KL column of a row reads the first estimator that every run of the row has: exact where the output space
# is enumerable, then the k1 Monte Carlo estimate (a policy with log-probabilities), then the best-of-n estimates.
KL_ESTIMATORS = ("kl_exact", "kl_mc", "kl_bon_beirami", "kl_bon_bound")
METRICS = ("reward", "gold_reward", "win_rate")
# Reported beside the rewards where runs have them: a task's own metrics, then the off-target metrics that
# `harness offtarget` adds (lm-eval's scores follow as "<lm-eval task>:<metric>").
BESIDE = ("rouge_l",)
OFFTARGET = ("length", "distinct_2", "ppl_ref")
MATCHED_KL = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
FILES = ("leaderboard.md", "leaderboard.csv", "index.html", "reward_kl.png", "winrate_kl.png", "results.jsonl")


def load_runs(out: Path, task: str) -> list[dict[str, Any]]:
    """config.json and results.json of every complete run of `task` in the store."""
    runs = [
        {"path": path, "config": config, "results": results}
        for path, config, results in store.load_runs(out)
        if results["task"]["name"] == task
    ]
    if not runs:
        raise store.StoreError(f"no finished runs of task {task!r} under {out} (run `harness sweep` first)")
    return runs


def _setting(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration without its seed: what the seeds of one leaderboard row share."""
    return {k: v for k, v in config.items() if k != "seed"}


def _interval(means: list[float], run_cis: list[list[float]]) -> tuple[float, float, float]:
    """Mean over seeds with a t-interval over seeds; with one seed, that run's bootstrap interval over prompts."""
    mean = float(np.mean(means))
    if len(means) == 1:
        return mean, float(run_cis[0][0]), float(run_cis[0][1])
    half = stats.t.ppf(0.975, len(means) - 1) * np.std(means, ddof=1) / np.sqrt(len(means))
    return mean, mean - half, mean + half


def _beside(results: dict[str, Any]) -> dict[str, tuple[float, list[float]]]:
    """The metrics of a run reported beside the rewards: name -> (mean, 95% interval)."""
    out = {name: results["metrics"][name] for name in BESIDE if name in results["metrics"]}
    offtarget = results.get("offtarget") or {}
    out |= {name: offtarget["metrics"][name] for name in OFFTARGET if name in offtarget.get("metrics", {})}
    found = {name: (m["mean"], m["ci95"]) for name, m in out.items()}
    for task, values in (offtarget.get("lm_eval") or {}).get("results", {}).items():
        for metric, value in values.items():
            if not metric.endswith("_stderr"):
                se = values.get(f"{metric}_stderr", np.nan)
                found[f"{task}:{metric}"] = (value, [value - 1.96 * se, value + 1.96 * se])
    return found


def _labels(settings: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Per row, the hyperparameters that vary between the rows of its method ('-' when the method has one row)."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for method, params in settings:
        by_method.setdefault(method, []).append(params)
    labels = []
    for method, params in settings:
        rows = by_method[method]
        varying = sorted(k for k in params if len({json.dumps(r.get(k), sort_keys=True) for r in rows}) > 1)
        labels.append(" ".join(f"{k}={params[k]}" for k in varying) or "-")
    return labels


def build(out: Path, task: str) -> pd.DataFrame:
    """The leaderboard of `task` from the store."""
    return frame(load_runs(out, task))


def frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """The leaderboard of loaded runs: one row per (method, setting), sorted by method then KL."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(store.config_hash(_setting(run["config"])), []).append(run)
    rows, settings = [], []
    for setting_hash, runs in groups.items():
        runs.sort(key=lambda r: r["config"]["seed"])
        first = runs[0]["results"]
        method = dict(runs[0]["config"]["method"])
        name = method.pop("name")
        settings.append((name, method))
        row: dict[str, Any] = {"method": name, "setting": None}
        for metric in METRICS:
            if all(metric in r["results"]["metrics"] for r in runs):
                ms = [r["results"]["metrics"][metric] for r in runs]
                row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"] = _interval(
                    [m["mean"] for m in ms], [m["ci95"] for m in ms]
                )
            else:
                row[metric] = row[f"{metric}_lo"] = row[f"{metric}_hi"] = np.nan
        beside = [_beside(r["results"]) for r in runs]
        for name in beside[0]:
            if all(name in b for b in beside):
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = _interval(
                    [b[name][0] for b in beside], [b[name][1] for b in beside]
                )
        estimator = next(k for k in KL_ESTIMATORS if all(k in r["results"]["metrics"] for r in runs))
        ms = [r["results"]["metrics"][estimator] for r in runs]
        row["kl"], row["kl_lo"], row["kl_hi"] = _interval([m["mean"] for m in ms], [m["ci95"] for m in ms])
        row["kl_estimator"] = estimator
        row["samples_per_output"] = first["cost"]["samples_per_output"]
        row["training_steps"] = first["cost"]["training_steps"]
        row["training_tokens"] = int(np.mean([r["results"]["cost"]["training_tokens"] for r in runs]))
        row["seeds"] = len(runs)
        row["config_hash"] = setting_hash
        row["harness_version"] = " ".join(sorted({r["results"]["harness_version"] for r in runs}))
        rows.append(row)
    df = pd.DataFrame(rows)
    df["setting"] = _labels(settings)
    df["pareto"] = pareto(df["kl"].to_numpy(), df["win_rate"].to_numpy())
    extra = [f"{c}{e}" for c in beside_columns(df) for e in ("", "_lo", "_hi")]
    base = [c for c in df.columns if c not in extra]
    at = base.index("kl")
    return df[base[:at] + extra + base[at:]].sort_values(["method", "kl", "setting"], ignore_index=True)


def pareto(kl: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Rows that no other row dominates (KL no higher and win rate no lower, one of them strictly)."""
    kl, win = np.asarray(kl, float), np.asarray(win, float)
    dominated = (kl[None, :] <= kl[:, None]) & (win[None, :] >= win[:, None])
    dominated &= (kl[None, :] < kl[:, None]) | (win[None, :] > win[:, None])
    return np.asarray(~dominated.any(axis=1))


def matched_kl(df: pd.DataFrame, budgets: tuple[float, ...] = MATCHED_KL) -> pd.DataFrame:
    """The best win rate at KL <= k for each budget k (rows with no policy inside a budget are left out)."""
    rows = []
    for k in budgets:
        inside = df[df["kl"] <= k]
        if len(inside):
            best = inside.loc[inside["win_rate"].idxmax()]
            rows.append(
                {"kl_budget": k, **{c: best[c] for c in ("method", "setting", "win_rate", "kl", "kl_estimator")}}
            )
    return pd.DataFrame(rows)


COLUMNS = {  # leaderboard.md: column -> header
    "method": "method",
    "setting": "setting",
    "reward": "proxy reward",
    "gold_reward": "gold reward",
    "win_rate": "win rate",
    "kl": "KL",
    "kl_estimator": "KL estimator",
    "samples_per_output": "samples/output",
    "training_steps": "train steps",
    "seeds": "seeds",
    "pareto": "Pareto",
    "config_hash": "config",
}


def _with_ci(df: pd.DataFrame, col: str) -> pd.Series:
    if df[col].isna().all():
        return pd.Series(["-"] * len(df), index=df.index)

    def cell(r: pd.Series) -> str:
        if pd.isna(r[col]):
            return "-"
        if pd.isna(r[col + "_lo"]):
            return f"{r[col]:.4f}"
        return f"{r[col]:.4f} [{r[col + '_lo']:.4f}, {r[col + '_hi']:.4f}]"

    return df.apply(cell, axis=1)


def beside_columns(df: pd.DataFrame) -> list[str]:
    """The columns of metrics reported beside the rewards that some row of the table has."""
    known = set(COLUMNS) | {f"{c}_{e}" for c in COLUMNS for e in ("lo", "hi")}
    found = [c for c in df.columns if c not in known and f"{c}_lo" in df.columns]
    order = {name: i for i, name in enumerate(BESIDE + OFFTARGET)}
    return sorted(found, key=lambda c: (order.get(c, len(order)), c))  # the task's, the harness's, lm-eval's


def display(df: pd.DataFrame) -> pd.DataFrame:
    """The table as printed: metrics with their 95% intervals, Pareto rows flagged."""
    extra = beside_columns(df)
    columns = list(COLUMNS)
    at = columns.index("kl_estimator") + 1
    columns[at:at] = extra
    shown = df[columns].copy()
    for col in ("reward", "gold_reward", "win_rate", "kl", *extra):
        shown[col] = _with_ci(df, col)
    shown["pareto"] = df["pareto"].map({True: "yes", False: ""})
    return shown.rename(columns=COLUMNS)


def _curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference curves (DESIGN section 4): best-of-n in the continuous limit and the win-rate-optimal tilt."""
    n = np.arange(1, 1025, dtype=float)
    c = np.logspace(-3, np.log10(60), 200)
    return {
        "best-of-n theory": (np.log(n) - (n - 1) / n, n / (n + 1)),
        "optimal tilt": (targets.tilt_kl(c), targets.tilt_win_rate(c)),
    }


def plot(df: pd.DataFrame, task: str, y: str, path: Path, runs: list[dict[str, Any]] | None = None) -> None:
    """`y` (reward or win_rate) against KL per method, with 95% intervals on both axes; the win-rate plot adds
    the theory curves, the reward plot the best-of-n curve of the first best-of-n run's reference pool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    methods = sorted(df["method"].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    for method in methods:
        d = df[df["method"] == method].sort_values("kl")
        ax.errorbar(
            d["kl"],
            d[y],
            xerr=[d["kl"] - d["kl_lo"], d["kl_hi"] - d["kl"]],
            yerr=[d[y] - d[f"{y}_lo"], d[f"{y}_hi"] - d[y]],
            fmt="o-",
            color=palette[method],
            label=method,
            capsize=2,
            markersize=4,
            linewidth=1,
        )
    kl_max = float(np.nanmax(df["kl_hi"])) * 1.1 if len(df) else 1.0
    if y == "win_rate":
        for (label, (kx, wy)), style in zip(_curves().items(), ("--", ":"), strict=True):
            keep = kx <= kl_max
            ax.plot(kx[keep], wy[keep], style, color="black", linewidth=1, label=label)
    elif runs:
        curve = next((r["results"]["bon_curve"] for r in runs if r["results"].get("bon_curve")), None)
        if curve:
            kx = np.array([p["kl_bon_beirami"]["mean"] for p in curve])
            ry = np.array([p["reward"]["mean"] for p in curve])
            keep = kx <= kl_max
            ax.plot(kx[keep], ry[keep], "--", color="gray", linewidth=1, label="best-of-n (pool, Beirami KL)")
    estimators = ", ".join(sorted(df["kl_estimator"].unique()))
    ax.set_xlabel(f"KL(pi || pi_ref), nats ({estimators})")
    ax.set_ylabel({"reward": "proxy reward", "win_rate": "win rate vs pi_ref"}[y])
    ax.set_title(f"{task}: {ax.get_ylabel()} against KL")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def markdown(df: pd.DataFrame, task: str) -> str:
    matched = matched_kl(df)
    lines = [
        f"# Leaderboard: {task}",
        "",
        "Generated by `harness leaderboard publish`; do not edit. Means over seeds with 95% intervals (t over seeds; "
        "with one seed, the bootstrap over prompts). KL from pi_ref in nats, estimator named per row. "
        "Pareto: no other row has both lower KL and higher win rate. config: hash of the row's resolved config "
        "without its seed.",
        "",
        display(df).to_markdown(index=False),
        "",
        "## Best win rate at matched KL",
        "",
        matched.to_markdown(index=False, floatfmt=".4f") if len(matched) else "(no rows)",
        "",
    ]
    return "\n".join(lines)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def page(df: pd.DataFrame, task: str, plots: list[Path]) -> str:
    """One self-contained HTML page (plots inlined); every string from the data is escaped."""
    table = display(df).to_html(index=False, escape=True, border=0, classes="leaderboard")
    matched = matched_kl(df)
    matched_html = matched.to_html(index=False, escape=True, border=0, float_format="%.4f") if len(matched) else ""
    title = html.escape(f"Leaderboard: {task}")
    style = (
        "body{font-family:sans-serif;margin:2em;} table{border-collapse:collapse;font-size:13px;}"
        "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right;} img{max-width:48%;}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n<h1>{title}</h1>\n{table}\n"
        f"<h2>Best win rate at matched KL</h2>\n{matched_html}\n"
        f"<h2>Plots</h2>\n{''.join(_img(p) for p in plots)}\n</body></html>\n"
    )


def publish(out: Path, task: str, dest: Path) -> Path:
    """Write the leaderboard directory `dest/<task>/` (replaced as a whole, atomically)."""
    runs = load_runs(out, task)
    df = frame(runs)
    with store.published(dest, task, out, FILES) as stage:
        df.to_csv(stage / "leaderboard.csv", index=False, float_format="%.6g")
        (stage / "leaderboard.md").write_text(markdown(df, task))
        plot(df, task, "reward", stage / "reward_kl.png", runs)
        plot(df, task, "win_rate", stage / "winrate_kl.png")
        (stage / "index.html").write_text(page(df, task, [stage / "reward_kl.png", stage / "winrate_kl.png"]))
        raw = sorted(
            ({"config": r["config"], "results": r["results"]} for r in runs),
            key=lambda r: (r["results"]["method"], r["results"]["config_hash"]),
        )
        store.write_jsonl(stage / "results.jsonl", raw)
    return dest / task

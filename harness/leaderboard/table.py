"""The leaderboard table: one row per (method, scientific settings) of a task, aggregated over seeds from the
results store (and, on request, from a published board's raw results), with the source of every number, Pareto
flags and the best win rate at matched KL against the reference policy."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard import intervals
from harness.leaderboard.runs import gather, row_hash, row_key
from harness.metrics import CATALOGUE, QUANTITIES, Quantity, metric_range

log = logging.getLogger(__name__)

# Each quantity's column reads the first estimator that every run of its row stores, in the catalogue's order of
# preference (harness.metrics.QUANTITIES); every stored estimator is kept in the csv as `<column>_<source>`.
# Reported beside the rewards where runs have them: a task's own metrics, then the off-target metrics that
# `harness offtarget` adds (lm-eval's scores follow as "<lm-eval task>:<metric>").
BESIDE = ("rouge_l",)
OFFTARGET = ("length", "distinct_2", "ppl_ref")
MATCHED_KL = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
REFERENCE = "reference policy"  # the matched-KL baseline: pi_ref itself, win rate 1/2 at KL 0 by definition


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def own_knobs(method: str) -> list[str] | None:
    """The hyperparameters that a method's config declares itself (not those it shares with the training core),
    or None where the method is not installed here."""
    from harness.method import METHODS

    try:
        config = METHODS.get(method).Config
    except (LookupError, ImportError, AttributeError):
        return None
    own = vars(config).get("__annotations__", {})
    return [name for name in config.model_fields if name in own and name not in checksums(method)]


def checksums(method: str) -> set[str]:
    """A method's settings that are part of its runs' identity but do not name a row (harness.method.CHECKSUM);
    none where the method is not installed here."""
    from harness.method import METHODS

    try:
        return METHODS.get(method).Config.marked("checksum")
    except (LookupError, ImportError, AttributeError):
        return set()


def _knobs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row, the settings that name it in the `setting` column: those that vary between the rows of its
    method (task settings as `evaluation.samples_per_prompt` and the like), else the method's own
    hyperparameters (every hyperparameter where the method is not installed here); never a checksum."""
    settings = []
    for run in runs:
        key = row_key(run["config"])
        name = key["method"]["name"]
        method = {k: v for k, v in key["method"].items() if k != "name" and k not in checksums(name)}
        settings.append((name, method | _flat(key["task"], "task.")))
    by_method: dict[str, list[dict[str, Any]]] = {}
    for name, s in settings:
        by_method.setdefault(name, []).append(s)
    own = {name: own_knobs(name) for name in by_method}
    out = []
    for name, s in settings:
        rows = by_method[name]
        varying = sorted(k for k in s if len({json.dumps(r.get(k), sort_keys=True) for r in rows}) > 1)
        keys = varying or own[name] or sorted(k for k in s if not k.startswith("task."))
        out.append({k.removeprefix("task."): s[k] for k in keys if k in s})
    return out


def label(knobs: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items()) or "-"


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


def build(out: Path, task: str, published: Path | None = None, reevaluated: bool = False) -> pd.DataFrame:
    """The leaderboard of `task` from the store; with `published` (a directory of published boards), merged with
    the published rows of `published/<task>/`; with `reevaluated`, runs read through their latest re-evaluation."""
    return frame(gather(out, task, published, reevaluated))


def seed_stats(runs: list[dict[str, Any]], name: str) -> tuple[list[float], list[list[float]]] | None:
    """The mean and 95% interval of metric `name` in each of a row's runs (one per seed); None where a run lacks
    it. A row's interval over seeds is formed from these (harness.leaderboard.intervals.over_seeds)."""
    if not all(name in r["results"]["metrics"] for r in runs):
        return None
    ms = [r["results"]["metrics"][name] for r in runs]
    return [m["mean"] for m in ms], [m["ci95"] for m in ms]


def frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """The leaderboard of loaded runs: one row per (method, settings, origin), sorted by method then KL."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((row_hash(run), run["origin"]), []).append(run)
    members = [one_per_seed(g) for g in groups.values()]
    knobs = _knobs([g[0] for g in members])
    rows = []
    for (setting_hash, origin), group, kn in zip(groups, members, knobs, strict=True):
        first = group[0]["results"]
        row: dict[str, Any] = {"method": group[0]["config"]["method"]["name"], "setting": label(kn)}
        for column, q in QUANTITIES.items():
            found = [(CATALOGUE[name].source, s) for name in q.estimators if (s := seed_stats(group, name)) is not None]
            if found:
                source, (means, cis) = found[0]
                row[column], row[f"{column}_lo"], row[f"{column}_hi"] = intervals.over_seeds(
                    means, cis, metric_range(column)
                )
            else:
                source, row[column], row[f"{column}_lo"], row[f"{column}_hi"] = "", np.nan, np.nan, np.nan
            row[f"{column}_source"] = source
        for q in QUANTITIES.values():
            for name in (*q.estimators, *q.also_stored):
                if (s := seed_stats(group, name)) is not None:
                    row[stored_column(q, name)] = float(np.mean(s[0]))
        beside = [_beside(r["results"]) for r in group]
        for name in beside[0]:
            if all(name in b for b in beside):
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = intervals.over_seeds(
                    [b[name][0] for b in beside], [b[name][1] for b in beside], metric_range(name)
                )
        row["samples_per_output"] = first["cost"]["samples_per_output"]
        row["training_steps"] = first["cost"]["training_steps"]
        row["training_tokens"] = int(np.mean([r["results"]["cost"]["training_tokens"] for r in group]))
        row["seeds"] = len(group)
        row["origin"] = origin
        row["knobs"] = json.dumps(kn, sort_keys=True)
        row["config_hash"] = setting_hash
        row["harness_version"] = " ".join(sorted({r["results"]["harness_version"] for r in group}))
        rows.append(row)
    df = pd.DataFrame(rows)
    df["pareto"] = pareto(df["kl"].to_numpy(), df["win_rate"].to_numpy())
    metrics = [f"{c}{e}" for c in QUANTITIES for e in ("", "_lo", "_hi", "_source")]
    stored = [stored_column(q, name) for q in QUANTITIES.values() for name in (*q.estimators, *q.also_stored)]
    extra = [f"{c}{e}" for c in beside_columns(df) for e in ("", "_lo", "_hi")]
    rest = [c for c in df.columns if c not in {"method", "setting", *metrics, *stored, *extra}]
    df = df[["method", "setting", *metrics, *[c for c in stored if c in df.columns], *extra, *rest]]
    return df.sort_values(["method", "origin", "kl", "setting"], ignore_index=True, na_position="last")


def stored_column(quantity: Quantity, estimator: str) -> str:
    """The csv column of one stored estimator of a quantity: `kl_mc`, `kl_beirami`, `win_rate_exact`, ..."""
    return f"{quantity.name}_{CATALOGUE[estimator].source.lower()}"


def one_per_seed(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of a row, one per seed, by seed: a row counts a seed once however many copies of its run the store
    holds (a run directory copied under another name, a run stored under the name it had before a setting was
    renamed beside its recomputation): the latest is kept."""
    kept: dict[int, dict[str, Any]] = {}
    for run in group:
        seed = run["config"]["seed"]
        if seed in kept:
            log.warning(
                "%s and %s are one run (same settings, seed %d): counted once", _name(kept[seed]), _name(run), seed
            )
        if seed not in kept or _recency(run) > _recency(kept[seed]):
            kept[seed] = run
    return [kept[seed] for seed in sorted(kept)]


def _recency(run: dict[str, Any]) -> str:
    return str(run["results"]["timing"]["started_at"])


def _name(run: dict[str, Any]) -> str:
    return str(run["path"]) if "path" in run else f"the published run {run['results']['config_hash']}"


def pareto(kl: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Rows that no other row dominates (KL no higher and win rate no lower, one of them strictly); a row
    without KL or win rate is neither on the front nor dominating. Values equal up to floating-point rounding
    (relative 1e-9) are equal: one KL averaged over prompts in another order must not put a row on the front."""
    kl, win = np.asarray(kl, float), np.asarray(win, float)
    known = ~(np.isnan(kl) | np.isnan(win))
    same_kl = np.isclose(kl[None, :], kl[:, None], rtol=1e-9, atol=1e-12)
    same_win = np.isclose(win[None, :], win[:, None], rtol=1e-9, atol=1e-12)
    lower_kl = (kl[None, :] < kl[:, None]) & ~same_kl
    higher_win = (win[None, :] > win[:, None]) & ~same_win
    dominated = (lower_kl | same_kl) & (higher_win | same_win) & (lower_kl | higher_win)
    dominated &= known[None, :]
    return np.asarray(~dominated.any(axis=1) & known)


def reference_row() -> dict[str, Any]:
    """pi_ref against its own held-out samples: win rate 1/2 at KL 0, by definition (no interval)."""
    return {
        "method": REFERENCE,
        "setting": "pi_ref",
        "win_rate": 0.5,
        "win_rate_lo": np.nan,
        "win_rate_hi": np.nan,
        "win_rate_source": "definition",
        "kl": 0.0,
        "kl_lo": np.nan,
        "kl_hi": np.nan,
        "kl_source": "definition",
        "origin": "",
    }


def matched_kl(df: pd.DataFrame, budgets: tuple[float, ...] = MATCHED_KL) -> pd.DataFrame:
    """The best win rate at KL <= k for each budget k, the reference policy (win rate 1/2 at KL 0) included as
    a baseline that wins every budget where no row beats it."""
    candidates = pd.concat([pd.DataFrame([reference_row()]), df], ignore_index=True)
    candidates = candidates[candidates["kl"].notna() & candidates["win_rate"].notna()]
    columns = ["method", "setting", "origin"] + [f"{c}{e}" for c in ("win_rate", "kl") for e in ("", "_lo", "_hi")]
    rows = []
    for k in budgets:
        inside = candidates[candidates["kl"] <= k]
        best = inside.loc[inside["win_rate"].idxmax()]  # the first of equals: the reference policy
        rows.append({"kl_budget": k, **{c: best.get(c) for c in columns + ["win_rate_source", "kl_source"]}})
    return pd.DataFrame(rows)


def beside_columns(df: pd.DataFrame) -> list[str]:
    """The columns of metrics reported beside the rewards that some row of the table has."""
    core = set(QUANTITIES)
    found = [c for c in df.columns if c not in core and f"{c}_lo" in df.columns and not c.endswith(("_lo", "_hi"))]
    order = {name: i for i, name in enumerate(BESIDE + OFFTARGET)}
    return sorted(found, key=lambda c: (order.get(c, len(order)), c))  # the task's, the harness's, lm-eval's

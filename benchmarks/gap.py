"""How far each trained row of a task stands from its target and from best-of-n at its KL, on the evaluation
prompts and on the training prompts, and whether it has converged (benchmarks/RESULTS.md, "imdb-small").

    python benchmarks/gap.py --out runs --task imdb-small [--method vbon] [--seed 0] [--plateau]

Every row aggregates its seeds as the leaderboard does (harness.leaderboard.intervals.over_seeds). A trained
row's target, where its method has one (docs/formulas.md, "Training objectives"), is a row of the same store:

- vbon (variant exact), bonbon: best-of-n at the row's n (pi_BoN);
- bond: best-of-n at n ** iterations (iterated BOND distils best-of-n of best-of-n ...);
- ppo: pi_ref exp(r / beta) / Z, estimated on the evaluation pool by softbon with lambda = beta at n = the
  pool size (its win rate and kl_pool).

jbond (a moving anchor) and dpo have no fixed target here; every row is also set against best-of-n at its own
KL, interpolated linearly between the best-of-n rows on either side (`bon@kl`; blank outside their range). A
best-of-n row's KL is the analytic log n - (n-1)/n, an upper bound on its true KL (docs/formulas.md), so the
best-of-n curve drawn through it lies right of the true one and `bon@kl` understates best-of-n: a trained row
below it is below best-of-n at its KL by at least that much. Printed as one markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from harness.leaderboard import intervals
from harness.leaderboard.runs import gather, row_hash
from harness.leaderboard.table import frame, one_per_seed, seed_stats
from harness.metrics import QUANTITIES, metric_range

TRAINED = ("vbon", "bond", "jbond", "ppo", "dpo", "bonbon")


def stat(group: list[dict[str, Any]], quantity: str, suffix: str = "") -> tuple[float, float, float] | None:
    """(mean, lo, hi) over seeds of the first estimator of `quantity` that every run stores, or None."""
    for name in QUANTITIES[quantity].estimators:
        if (found := seed_stats(group, name + suffix)) is not None:
            return intervals.over_seeds(*found, metric_range(quantity))
    return None


def rows(out: Path, task: str, seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """The board's rows (harness.leaderboard.frame) over `seeds` (default: every seed), each with its method's config,
    its seeds and its training-prompt stats (the leaderboard's own, harness.leaderboard.table.seed_stats)."""
    runs = [r for r in gather(out, task) if seeds is None or r["config"]["seed"] in seeds]
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(row_hash(run), []).append(run)
    found = []
    for _, row in frame(runs).iterrows():
        group = one_per_seed(groups[row.config_hash])
        config = {k: v for k, v in group[0]["config"]["method"].items() if k != "name"}
        found.append(
            {
                "method": row.method,
                "setting": row.setting,
                "config": config,
                "seed_list": [r["config"]["seed"] for r in group],
                "steps": row.training_steps,
                **{q: (row[q], row[f"{q}_lo"], row[f"{q}_hi"]) for q in ("win_rate", "kl")},
                **{f"{q}_train": stat(group, q, "_train") for q in ("win_rate", "kl")},
            }
        )
    return found


def target(row: dict[str, Any], board: list[dict[str, Any]], pool_size: int) -> tuple[str, dict[str, Any] | None]:
    cfg, method = row["config"], row["method"]
    if method == "vbon" and cfg.get("variant", "exact") == "exact" or method == "bonbon":
        n = cfg["n"]
    elif method == "bond":
        n = cfg["n"] ** cfg.get("iterations", 1)
    elif method == "ppo":
        lam = cfg["beta"]
        found = [
            r
            for r in board
            if r["method"] == "softbon" and r["config"]["lambda"] == lam and r["config"]["n"] == pool_size
        ]
        return f"softbon n={pool_size} lambda={lam:g}", (found[0] if found else None)
    else:
        return "", None
    found = [r for r in board if r["method"] == "bon" and r["config"]["n"] == n]
    return f"bon n={n}", (found[0] if found else None)


def bon_at(kl: float, board: list[dict[str, Any]]) -> float | None:
    """Best-of-n's win rate at KL `kl`, interpolated between the best-of-n rows on either side."""
    points = sorted((r["kl"][0], r["win_rate"][0]) for r in board if r["method"] == "bon" and r["kl"] and r["win_rate"])
    if len(points) < 2 or not points[0][0] <= kl <= points[-1][0]:
        return None
    xs, ys = zip(*points, strict=True)
    return float(np.interp(kl, xs, ys))


def plateau(board: list[dict[str, Any]]) -> None:
    """Each row beside the row of the same settings and seeds at twice its steps: converged where doubling the
    steps moves neither win rate nor KL by more than the 95% half-width of either row."""
    print("| method | setting | win rate at T | at 2T | KL at T | at 2T | converged |")
    print("|---|---|---|---|---|---|---|")
    for row in board:
        twice = {**row["config"], "steps": 2 * row["config"].get("steps", 0)}
        match = [
            r
            for r in board
            if r["method"] == row["method"] and r["config"] == twice and r["seed_list"] == row["seed_list"]
        ]
        if not match or row["win_rate"] is None or row["kl"] is None:
            continue
        other = match[0]
        moved = {
            q: abs(other[q][0] - row[q][0]) <= min((s[2] - s[1]) / 2 for s in (row[q], other[q]))
            for q in ("win_rate", "kl")
        }
        verdict = "yes" if all(moved.values()) else "no: " + ", ".join(q for q, ok in moved.items() if not ok)
        print(
            f"| {row['method']} | {row['setting']} | {fmt(row['win_rate'])} | {fmt(other['win_rate'])} "
            f"| {fmt(row['kl'])} | {fmt(other['kl'])} | {verdict} |"
        )


def fmt(s: tuple[float, float, float] | None) -> str:
    return "" if s is None else f"{s[0]:.3f} [{s[1]:.3f}, {s[2]:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs"), help="results store")
    ap.add_argument("--task", default="imdb-small")
    ap.add_argument("--method", action="append", help="trained methods to list (default: all)")
    ap.add_argument("--pool-size", type=int, default=128, help="the task's evaluation pool (ppo's target)")
    ap.add_argument("--plateau", action="store_true", help="print each row beside its run at twice the steps")
    ap.add_argument("--seed", type=int, action="append", help="only these seeds (default: every seed)")
    args = ap.parse_args()
    board = rows(args.out, args.task, args.seed)
    if args.plateau:
        plateau([r for r in board if not args.method or r["method"] in args.method])
        return
    wanted = args.method or TRAINED
    print(
        "| method | setting | steps | seeds | win rate | KL | win rate, training prompts | KL, training prompts "
        "| target | target win rate | target KL | bon@kl |"
    )
    print("|---|---|---:|---:|---|---|---|---|---|---|---|---:|")
    for row in board:
        if row["method"] not in wanted:
            continue
        name, t = target(row, board, args.pool_size)
        at = bon_at(row["kl"][0], board) if row["kl"] else None
        print(
            f"| {row['method']} | {row['setting']} | {row['steps']} | {len(row['seed_list'])} "
            f"| {fmt(row['win_rate'])} | {fmt(row['kl'])} "
            f"| {fmt(row['win_rate_train'])} | {fmt(row['kl_train'])} | {name} "
            f"| {fmt(t['win_rate']) if t else ''} | {fmt(t['kl']) if t else ''} | {'' if at is None else f'{at:.3f}'} |"
        )


if __name__ == "__main__":
    main()

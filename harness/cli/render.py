"""What the commands print: error lines, a run's metric tables, off-target results, hyperparameters, a reproduced
cell, a sweep's cell lines and a leaderboard. Metrics are printed by name, their versions in one footnote."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.confighelp import describe
from harness.confighelp import show as show_value
from harness.metrics import CATALOGUE, QUANTITIES, TRAIN, metric_range, preferred, split_id

if TYPE_CHECKING:
    import pandas as pd

    from harness.registry import Registry
    from harness.sweep import Outcome

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as one error line on stderr; the exit to raise, with status `code`."""
    line = " ".join(str(message).split())
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def metric_name(metric_id: str) -> str:
    """The name of a stored metric id `name@version` ('reward@1' -> 'reward')."""
    return split_id(metric_id)[0]


def metric_label(metric_id: str) -> str:
    """A metric id as people read it: 'reward@1' -> 'reward v1' (never 'reward@1', which reads as n = 1)."""
    name, version = split_id(metric_id)
    return f"{name} v{version}" if version else name


def versions_line(ids: Iterable[str]) -> str | None:
    """'metric versions: reward v1, win_rate v1, ...': the footnote of tables that show metrics by name."""
    versioned = [metric_label(i) for i in dict.fromkeys(ids) if "@" in i]
    return f"metric versions: {', '.join(versioned)}" if versioned else None


def print_versions(ids: Iterable[str]) -> None:
    line = versions_line(ids)
    if line:
        console.print(line, style="dim", highlight=False, markup=False)


def in_order(names: Iterable[str]) -> list[str]:
    """Metric names grouped by the quantity they measure (harness.metrics.QUANTITIES, in its order; each estimate
    beside its exact value), whatever order a dict holds them in: a fresh run's results and the same results read
    back from results.json (whose keys are sorted) print alike. Other metrics (a task's own) follow, by name; the
    same on training prompts after all."""

    def key(name: str) -> tuple[bool, int, str]:
        on_train = name.endswith(TRAIN)
        base = name.removesuffix(TRAIN).removesuffix("_exact")
        family = next((i for i, q in enumerate(QUANTITIES) if base == q or base.startswith(f"{q}_")), len(QUANTITIES))
        return on_train, family, name

    return sorted(names, key=key)


def interval(summary: dict[str, Any]) -> str:
    """A stored 95% interval, clipped to its metric's range as the boards clip it: a k1 KL estimate (`kl_pool`,
    `kl_mc`) can be negative on a prompt and its bootstrap interval reach below 0, the KL itself cannot."""
    low, high = metric_range(split_id(summary["id"])[0])
    lo, hi = (min(max(v, low), high) for v in summary["ci95"])
    return f"[{lo:.4f}, {hi:.4f}]"


def metrics_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"{results['method']} on {results['task']['name']} (seed {results['seed']})")
    for col in ("metric", "mean", "se", "95% CI", "prompts"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in (results["metrics"][k] for k in in_order(results["metrics"])):
        se = "-" if m["se"] in (None, 0.0) else f"{m['se']:.4f}"
        table.add_row(metric_name(m["id"]), f"{m['mean']:.4f}", se, interval(m), str(m["n_prompts"]))
    return table


def curve_table(results: dict[str, Any]) -> Table | None:
    """The best-of-n curve at powers of two and the run's own n (every n is in results.json)."""
    curve = results.get("bon_curve") or []
    if not curve:
        return None
    n_run = results["cost"]["samples_per_output"]
    names = in_order(k for k in curve[0] if k != "n")
    table = Table(title="best-of-n from the reference pool (mean over prompts)")
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(metric_name(curve[0][name]["id"]), justify="right")
    for point in curve:
        n = point["n"]
        if n & (n - 1) == 0 or n == n_run or n == len(curve):
            table.add_row(str(n), *(f"{point[k]['mean']:.4f}" for k in names), style="bold" if n == n_run else None)
    return table


def print_results(results: dict[str, Any]) -> None:
    """The tables of a run's results, as `run`, `evaluate` and `show` print them."""
    console.print(metrics_table(results))
    curve = curve_table(results)
    if curve is not None:
        console.print(curve)
    point = (results.get("bon_curve") or [{}])[0]
    metrics = results["metrics"] | {k: v for k, v in point.items() if k != "n"}
    print_versions(metrics[k]["id"] for k in in_order(metrics))


def offtarget_table(path: Path, entry: dict[str, Any]) -> Table:
    table = Table(title=f"off-target: {path}")
    for col in ("metric", "mean", "95% CI"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in (entry["metrics"][k] for k in in_order(entry["metrics"])):
        table.add_row(metric_name(m["id"]), f"{m['mean']:.4f}", interval(m))
    lm = entry.get("lm_eval")
    if lm:
        for name, values in lm["results"].items():
            for metric, value in values.items():
                if not metric.endswith("_stderr"):
                    se = values.get(f"{metric}_stderr")
                    table.add_row(f"{name}: {metric}", f"{value:.4f}", "-" if se is None else f"se {se:.4f}")
        table.caption = f"lm-eval {lm['lm_eval_version']} on the {lm['weights']} weights"
    return table


def print_offtarget(path: Path, entry: dict[str, Any]) -> None:
    console.print(offtarget_table(path, entry))
    print_versions(entry["metrics"][k]["id"] for k in in_order(entry["metrics"]))


def runs_table(runs: Iterable[tuple[Path, Any, dict[str, Any]]]) -> Table:
    """One line per stored run: its task, method, hash, seed, win rate and headline KL (with its estimator)."""
    table = Table()
    for col in ("task", "method", "config_hash", "seed", "win_rate", "kl", "path"):
        table.add_column(col)
    for path, _, r in runs:
        m = r["metrics"]
        kl = preferred(m, "kl")
        table.add_row(
            r["task"]["name"],
            r["method"],
            r["config_hash"],
            str(r["seed"]),
            f"{m['win_rate']['mean']:.4f}",
            "-" if kl is None else f"{kl[1]['mean']:.4f} ({metric_label(kl[1]['id'])})",
            str(path),
        )
    return table


def print_hyperparameters(methods: Registry[Any]) -> None:
    """One table per method: each hyperparameter's name, type, default, range and help."""
    for name in methods.names():
        method = methods.get(name)
        doc = (method.__doc__ or "").strip().split("\n")[0]
        table = Table(title=f"{name}: {doc}" if doc else name, title_justify="left", highlight=False)
        for col in ("name", "type", "default", "range", "help"):
            table.add_column(col, overflow="fold", ratio=3 if col == "help" else None)
        fields = describe(method.Config)
        for f in fields:
            table.add_row(*(escape(x) for x in (f.name + " *" * f.operational, f.type, f.default, f.range, f.help)))
        if any(f.operational for f in fields):
            table.caption = "* operational: stored with the run, not part of its identity (config hash)"
        console.print(table)
    console.print(
        "Set a hyperparameter with -p KEY=VALUE; a task's YAML file may change its defaults (its methods: block).",
        highlight=False,
        markup=False,
    )


def print_names(registry: Any) -> None:
    """A registry's names, one per line; one that cannot be loaded says why on its line."""
    for name in registry.names():
        problem = registry.problem(name)
        if problem is None:
            console.print(name, highlight=False)
        else:
            console.print(f"{name}  [red](broken: {escape(problem)})[/]", highlight=False)


def print_reproduced(outcome: Any) -> None:
    """The table of one reproduced cell: each quantity published and computed again, and their difference."""
    from harness.leaderboard.table import own_knobs

    config, results = outcome.published["config"], outcome.published["results"]
    own = own_knobs(results["method"]) or []
    knobs = " ".join(f"{k}={show_value(v)}" for k, v in config["method"].items() if k in own)
    commit = (results["provenance"].get("git_commit") or "unknown")[:7]
    table = Table(
        title=f"{results['task']['name']} {results['method']} {knobs} seed {results['seed']}: published "
        f"{results['config_hash']} (commit {commit}), computed again in {outcome.path}",
        title_justify="left",
    )
    for col in ("quantity", "published", "now", "largest difference", ""):
        table.add_column(col, justify="left" if col in ("quantity", "") else "right", overflow="fold")
    for c in outcome.checks:
        status = "[green]identical[/]" if c.difference == 0 else ("[yellow]within[/]" if c.ok else "[red]differs[/]")
        table.add_row(
            c.quantity,
            "-" if c.published is None else f"{c.published:.6f}",
            "-" if c.reproduced is None else f"{c.reproduced:.6f}",
            f"{c.difference:.2e}",
            status + (f" {escape(c.note)}" if c.note else ""),
        )
    console.print(table)
    for note in outcome.notes:
        console.print(f"[red]{escape(note)}[/]", highlight=False)


def cell_line(outcome: Outcome) -> str:
    """'toy bon n=4 seed 0: 2.1 s, reward 2.3750 (exact), win_rate 0.7012 (exact), kl 0.5102 (exact)': the
    headline value of each quantity the run has, with its source."""
    c = outcome.cell
    head = " ".join([c.task, c.method, *(f"{k}={show_value(v)}" for k, v in c.params.items()), f"seed {c.seed}"])
    if outcome.error:
        return f"{head}: failed: {outcome.error}"
    parts = ["reused" if outcome.reused else f"{outcome.seconds:.1f} s"]
    for column, q in QUANTITIES.items():
        found = next((name for name in q.estimators if name in outcome.metrics), None)
        if found is not None:
            parts.append(f"{column} {outcome.metrics[found]:.4f} ({CATALOGUE[found].source})")
    return f"{head}: {', '.join(parts)}"


def print_board(df: pd.DataFrame, task: str, out: str) -> None:
    """A leaderboard as `leaderboard build` prints it: the table, its footnotes, the best win rate at matched KL."""
    from harness import leaderboard

    shown = leaderboard.display(df)
    table = Table(title=f"leaderboard: {task} ({len(df)} rows, runs in {out})")
    for col in shown.columns:
        table.add_column(str(col), justify="left" if col in ("method", "setting") else "right")
    for row in shown.itertuples(index=False):
        table.add_row(*(str(x) for x in row))
    console.print(table)
    for note in leaderboard.footnotes(df):
        console.print(note, highlight=False)
    matched = leaderboard.matched_kl(df)
    if len(matched):
        console.print("best win rate at matched KL:")
        for r in matched.itertuples(index=False):
            console.print(
                f"  KL <= {r.kl_budget:g}: {r.method} {r.setting}  win rate {r.win_rate:.4f} at KL {r.kl:.4f}",
                highlight=False,
            )

"""Leaderboards as data: one row per (method, scientific settings) of a task, aggregated over seeds from the
results store (optionally merged with a published board's raw results), exact values first, intervals that stay
in each metric's range, Pareto flags, a ranking at matched KL against the reference policy, plots and pages.

`publish` writes `<dest>/<task>/` (leaderboard.md, leaderboard.csv, index.html, the plots, training.png where
runs trained, and results.jsonl: the raw results behind the rows, with each trained run's train log) and
`<dest>/index.html`, the page of every board. A hand-written FINDINGS.md in a board (what its rows show, with
numbers quoted from them) is kept across publications and linked from the board."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from harness import store
from harness.leaderboard.page import INDEX_MARK, index, page
from harness.leaderboard.plots import plot, trained_rows, training_plot
from harness.leaderboard.runs import LOCAL, PUBLISHED, gather, load_published, load_runs
from harness.leaderboard.table import MATCHED_KL, REFERENCE, build, frame, matched_kl, pareto
from harness.leaderboard.text import display, footnotes, markdown
from harness.provenance import board_provenance

PLOTS = {"reward": "reward_kl.png", "win_rate": "winrate_kl.png", "gold_reward": "gold_kl.png"}
FILES = (
    "leaderboard.md",
    "leaderboard.csv",
    "index.html",
    "reward_kl.png",
    "winrate_kl.png",
    "results.jsonl",
    "provenance.json",
)
WHERE_GOLD = ("gold_kl.png",)  # written too where the task has a gold reward
TRAINING = "training.png"  # written too where some run trained: its logged reward and KL against the step
FINDINGS = "FINDINGS.md"  # written by people, not by publish: carried over to every new publication
CONSTRAINTS = "constraints.txt"  # beside the boards: the exact versions they were computed with (harness constraints)


def publish(
    out: Path,
    task: str,
    dest: Path,
    with_published: bool = False,
    reevaluated: bool = False,
    constraints: Path | None = None,
) -> Path:
    """Write the board `dest/<task>/` (replaced as a whole, atomically) and the index `dest/index.html`; with
    `with_published`, the rows of the board already published there are merged with the store's; with
    `reevaluated`, runs are read through their latest re-evaluation. The board records the constraints file it
    was computed under (`constraints`, by default `dest/constraints.txt` where it exists) in provenance.json."""
    _check_index(dest / "index.html")  # before anything is written
    # A publication's rows are all its own: a store's run replaces the published run of its settings, and the
    # published/local split of `build --with-published` (a view of your runs among the board's) is not kept.
    runs = [r | {"origin": LOCAL} for r in gather(out, task, dest if with_published else None, reevaluated)]
    if constraints is None and (dest / CONSTRAINTS).is_file():
        constraints = dest / CONSTRAINTS
    environment = board_provenance([r["results"] for r in runs], constraints)
    df = frame(runs)
    matched = matched_kl(df)
    findings = dest / task / FINDINGS
    kept = findings.read_text() if findings.is_file() else None
    with store.published(dest, task, out, (*FILES, *WHERE_GOLD, TRAINING, FINDINGS)) as stage:
        if kept is not None:
            (stage / FINDINGS).write_text(kept)
        df.to_csv(stage / "leaderboard.csv", index=False, float_format="%.6g")
        store.write_json(stage / "provenance.json", environment)
        plots = [stage / PLOTS[y] for y in ("win_rate", "reward", "gold_reward") if df[y].notna().any()]
        for path in plots:
            y = next(k for k, v in PLOTS.items() if v == path.name)
            plot(df, task, y, path, runs)
        training = stage / TRAINING if trained_rows(df, runs) else None
        if training is not None:
            training_plot(df, task, training, runs)
        (stage / "leaderboard.md").write_text(
            markdown(df, matched, task, kept is not None, training is not None, environment)
        )
        (stage / "index.html").write_text(page(df, matched, task, plots, kept is not None, training))
        raw = sorted(
            ({"config": r["config"], "results": r["results"]} | _train_log(r) for r in runs),
            key=lambda r: (r["results"]["method"], r["results"]["config_hash"], r["results"]["seed"]),
        )
        store.write_jsonl(stage / "results.jsonl", raw)
    with store.locked(dest, str(dest / "index.html")):  # the publications of other tasks wait, then list this one
        _check_index(dest / "index.html")
        store.write_atomic(dest / "index.html", index(dest))
    return dest / task


def _check_index(path: Path) -> None:
    """Refuse to replace an index page that no publication wrote (it lacks the mark every index page carries)."""
    if not os.path.lexists(path):
        return
    ours = False
    if path.is_file() and not path.is_symlink():
        with contextlib.suppress(OSError), open(path, "rb") as f:
            ours = INDEX_MARK.encode() in f.read(1 << 20)  # the mark is near the top of the page
    if not ours:
        raise store.StoreError(
            f"{path} was not written by `harness leaderboard publish` and publishing replaces only its own index "
            "page: move it away, or choose another --dest"
        )


def _train_log(run: dict) -> dict:
    """A trained run's train log, carried in results.jsonl so that a board republished from it draws it again."""
    return {"train_log": run["train_log"]} if run.get("train_log") else {}


__all__ = [
    "FILES",
    "MATCHED_KL",
    "PLOTS",
    "PUBLISHED",
    "REFERENCE",
    "TRAINING",
    "WHERE_GOLD",
    "build",
    "display",
    "footnotes",
    "frame",
    "gather",
    "index",
    "load_published",
    "load_runs",
    "markdown",
    "matched_kl",
    "page",
    "pareto",
    "plot",
    "publish",
    "training_plot",
]

"""`harness leaderboard`: build (print) and publish the leaderboard of a task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness import store
from harness.cli.app import OutOption, Verbose
from harness.cli.render import console, print_board
from harness.task import ConfigError

app = typer.Typer(help="Leaderboards of a task from the results store.", no_args_is_help=True)


@app.callback()
def board(verbose: Verbose = False) -> None:
    """Leaderboards of a task from the results store."""


WithPublished = Annotated[
    bool, typer.Option(help="Rank the store's runs among the rows already published in <dest>/<task>/results.jsonl.")
]
Reevaluated = Annotated[
    bool,
    typer.Option(
        help="Read each run through its latest re-evaluation (`harness evaluate`), where it has one; rows then "
        "group runs by those evaluation settings."
    ),
]


@app.command("build")
def leaderboard_build(
    task: Annotated[str, typer.Option(help="Task whose runs to rank.")],
    out: OutOption = "runs",
    with_published: WithPublished = False,
    dest: Annotated[str, typer.Option(help="Directory of published leaderboards.")] = "leaderboards",
    verbose: Verbose = False,
    reevaluated: Reevaluated = False,
) -> None:
    """Print the leaderboard of a task: one row per (method, setting) aggregated over seeds."""
    from harness import leaderboard

    boards = store.dest_root(dest)
    if with_published:
        print_published(boards, task)
    print_board(leaderboard.build(store.root(out), task, boards if with_published else None, reevaluated), task, out)


def print_published(dest: Path, task: str) -> None:
    """How many published runs `--with-published` read (each checked against the results record)."""
    from harness import leaderboard

    runs = leaderboard.load_published(dest, task)
    console.print(f"read {len(runs)} published runs from {dest / task / 'results.jsonl'}", highlight=False)


@app.command("publish")
def leaderboard_publish(
    task: Annotated[str, typer.Option(help="Task whose leaderboard to publish.")],
    out: OutOption = "runs",
    dest: Annotated[str, typer.Option(help="Directory of published leaderboards.")] = "leaderboards",
    with_published: WithPublished = False,
    verbose: Verbose = False,
    reevaluated: Reevaluated = False,
    constraints: Annotated[
        Path | None,
        typer.Option(help="The constraints file the runs were computed under (default: <dest>/constraints.txt)."),
    ] = None,
) -> None:
    """Write <dest>/<task>/: leaderboard.md, leaderboard.csv, index.html, the plots against KL, the raw results
    behind them (results.jsonl) and provenance.json (the constraints file and its sha256), and <dest>/index.html,
    the page of every board. It replaces only a previous publication of the task."""
    from harness import leaderboard

    if constraints is not None and not constraints.is_file():
        raise ConfigError(f"--constraints {str(constraints)!r} is not a file (write one with `harness constraints`)")
    boards = store.dest_root(dest)
    if with_published:
        print_published(boards, task)
    path = leaderboard.publish(store.root(out), task, boards, with_published, reevaluated, constraints)
    files = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    console.print(f"published: {path}  ({', '.join(files)})", highlight=False)

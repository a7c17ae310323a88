"""The commands that look after the store and the environment: `ls`, `pool build`, `gc`, `constraints`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from harness import store
from harness.cli.app import OutOption, TaskOption, Verbose, on_interrupt
from harness.cli.render import console, err, print_hyperparameters, print_names, runs_table


class Listable(StrEnum):
    methods = "methods"
    tasks = "tasks"
    runs = "runs"


def ls(
    ctx: typer.Context,
    what: Annotated[Listable, typer.Argument(help="What to list.")],
    out: OutOption = "runs",
    verbose: Verbose = False,
) -> None:
    """List registered methods or tasks, or the runs in the store. `ls methods -v` shows each method's
    hyperparameters (name, type, default, range, help)."""
    if what is Listable.methods:
        from harness.method import METHODS

        if ctx.meta.get("verbose"):  # -v before or after the command
            print_hyperparameters(METHODS)
        else:
            print_names(METHODS)
    elif what is Listable.tasks:
        from harness.task import TASKS

        print_names(TASKS)
    else:
        console.print(runs_table(store.load_runs(store.root(out))))


pool_app = typer.Typer(help="The shared reference pool of a task.", no_args_is_help=True)


@pool_app.callback()
def pool(verbose: Verbose = False) -> None:
    """The shared reference pool of a task."""


@pool_app.command("build")
@on_interrupt("no partial pool was written")
def pool_build(
    task: TaskOption,
    m: Annotated[int | None, typer.Option("--m", min=1, help="Samples per prompt (task's pool_size).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pool (the run seed that will reuse it).")] = 0,
    out: OutOption = "runs",
    verbose: Verbose = False,
) -> None:
    """Sample (or find) the reference pool and the held-out reference samples of a task's prompts."""
    from harness.pool import PoolCache
    from harness.run import check_seed, with_evaluation
    from harness.task import build_task, load_task
    from harness.threads import pinned, run_threads

    root = store.root(out)
    config = with_evaluation(load_task(task), {"pool_size": m} if m is not None else None)  # m within its bounds
    check_seed(seed, f"--seed {seed}")
    store.ensure_writable(root)
    pools = PoolCache(root, run_threads())
    with pinned(pools.threads):  # as a run samples it
        built = build_task(config)
        size = config.evaluation.pool_size
        pools.get(built, size, seed, stream="pool")
        pools.get(built, config.evaluation.reference_samples, seed, stream="held-out")
    console.print(f"pool: {pools.path(built, size, seed, 'pool')}", highlight=False)
    console.print(f"sampled {pools.sampled} completions ({'reused from disk' if not pools.sampled else 'now cached'})")


def gc(out: OutOption = "runs", verbose: Verbose = False) -> None:
    """Clean the results store: remove what killed writers left behind (staging directories, with any policy
    weights inside), reference pools and checkpoints that fail their checksums, and report broken runs (which
    `harness run ... --force` recomputes). Finished runs that read correctly are never touched."""
    removed = store.gc(store.root(out))
    for path, why in removed:
        console.print(f"removed {path}  [dim]({why})[/]", highlight=False)
    broken = store.broken_runs(store.root(out))
    for _, why in broken:
        err.print(f"broken run (recompute it with --force, or delete it): {escape(why)}", highlight=False)
    console.print(f"{len(removed)} removed, {len(broken)} broken runs", highlight=False)


def constraints(verbose: Verbose = False) -> None:
    """Print a pip constraints file of the exact versions installed here (every dependency of bon-harness and
    every library that can change a number), e.g. `harness constraints > leaderboards/constraints.txt`."""
    from harness.provenance import constraints as pins

    console.out(pins(), end="", highlight=False)

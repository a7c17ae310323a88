"""The commands over many cells: `sweep` runs a grid of them, `reproduce` runs a published board's cells again and
compares every number."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness import store
from harness.cli.app import OutOption, Verbose, on_interrupt
from harness.cli.render import cell_line, console, err, print_reproduced

if TYPE_CHECKING:
    from harness.sweep import Outcome


class Executor(StrEnum):
    local = "local"
    ray = "ray"


@on_interrupt("finished cells are stored, the others resume when the sweep runs again")
def sweep(
    file: Annotated[
        str, typer.Argument(help="Sweep file (YAML: tasks, seeds, methods with grids), or a shipped sweep's name.")
    ],
    executor: Annotated[Executor, typer.Option(help="Run cells one after another, or as Ray tasks.")] = Executor.local,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (e.g. ray://host:10001); default: a local Ray instance.")
    ] = None,
    out: OutOption = "runs",
    force: Annotated[bool, typer.Option(help="Recompute cells that already finished.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run a grid of task x method x hyperparameters x seeds; finished cells are skipped, interrupted ones resume.

    On a terminal a progress bar follows the cells; elsewhere (CI, a pipe) each finished cell prints one line."""
    from harness import sweep as sweeps

    plan = sweeps.load(sweeps.locate(file))
    root = store.root(out)
    store.ensure_writable(root)
    console.print(f"{file}: {len(plan.cells)} cells", highlight=False)
    report = None if console.is_terminal else cell_reporter(len(plan.cells))
    if executor is Executor.ray:
        outcomes = sweeps.run_ray(plan, root, address, force, on_done=report)
    else:
        outcomes = sweeps.run_local(plan, root, force, on_done=report)
    failed = [o for o in outcomes if o.error]
    reused = sum(o.reused for o in outcomes if not o.error)
    console.print(f"{len(outcomes) - len(failed) - reused} cells run, {reused} already finished, {len(failed)} failed")
    for o in failed:
        c = o.cell
        err.print(f"failed: {c.task} {c.method} {c.params} seed {c.seed}: {o.error}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def cell_reporter(total: int) -> Callable[[Outcome], None]:
    """Prints one plain line per finished cell (for logs, where no progress bar is drawn)."""
    done = 0

    def report(outcome: Outcome) -> None:
        nonlocal done
        done += 1
        console.print(f"[{done}/{total}] {cell_line(outcome)}", markup=False, highlight=False, soft_wrap=True)

    return report


@on_interrupt("the cells reproduced so far are printed above")
def reproduce(
    task: Annotated[str, typer.Option(help="Task whose published board to reproduce.")],
    method: Annotated[list[str], typer.Option(help="Only the runs of this method (repeatable).")] = [],  # noqa: B006
    config_hash: Annotated[
        list[str], typer.Option("--config-hash", help="Only the run with this config hash or prefix (repeatable).")
    ] = [],  # noqa: B006
    dest: Annotated[Path, typer.Option(help="Directory of published leaderboards.")] = Path("leaderboards"),
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Scratch store to run into (copy a .pools directory into it to skip sampling pools again); "
            "default: a temporary one, removed afterwards.",
        ),
    ] = None,
    rtol: Annotated[
        float, typer.Option(min=0, help="Relative tolerance of every comparison (0: identical; state its reason).")
    ] = 0.0,
    atol: Annotated[float, typer.Option(min=0, help="Absolute tolerance of every comparison.")] = 0.0,
    verbose: Verbose = False,
) -> None:
    """Run cells of a published board (<dest>/<task>/results.jsonl) again and compare every number with the
    published one: every metric (mean, se, 95% interval), the best-of-n curve and the cost. Each must be
    identical, or with --rtol/--atol within |a - b| <= atol + rtol max(|a|, |b|). Exits 1 on a difference."""
    import tempfile

    from harness import reproduce as reproducing

    runs = reproducing.select(dest, task, method, config_hash)
    tol = reproducing.Tolerance(rtol, atol)
    console.print(f"reproducing {len(runs)} published runs of {dest / task}", highlight=False)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="harness-reproduce-") as scratch:
            outcomes = reproducing.reproduce(runs, Path(scratch), tol, on_done=print_reproduced)
    else:
        outcomes = reproducing.reproduce(runs, store.root(out), tol, on_done=print_reproduced)
    failed = [o for o in outcomes if not o.ok]
    exact = sum(all(c.difference == 0 for c in o.checks) and not o.notes for o in outcomes)
    tolerance = f" ({tol})" if tol != reproducing.EXACT else ""
    console.print(
        f"{len(outcomes)} cells: {exact} identical, {len(outcomes) - exact - len(failed)} within tolerance"
        f"{tolerance}, {len(failed)} differ",
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)

"""The `harness` command line. Heavy libraries (torch, transformers) load only inside commands that run models.

`app` (harness.cli.app) holds the error and interrupt handlers every command shares, `render` what they print,
and one module per group of commands does their work through the engine; the commands are registered here, in
the order `harness --help` lists them."""

from __future__ import annotations

from harness.cli import boards, housekeeping, runs, sweeps
from harness.cli.app import app
from harness.cli.render import console

app.command()(runs.run)
app.command("evaluate")(runs.evaluate)
app.command()(runs.offtarget)
app.command()(runs.export)
app.command()(sweeps.sweep)
app.add_typer(boards.app, name="leaderboard")
app.command()(sweeps.reproduce)
app.command()(housekeeping.constraints)
app.add_typer(housekeeping.pool_app, name="pool")
app.command()(housekeeping.gc)
app.command("ls")(housekeeping.ls)
app.command()(runs.show)

__all__ = ["app", "console"]

"""The `harness` app and what every command shares: the one error handler (bad input is one line and exit status
2), the one interrupt handler, logging verbosity and the common options."""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.logging import RichHandler
from typer.core import TyperGroup

from harness import store
from harness.assets import MissingAssetError
from harness.backends import EngineError
from harness.cli.render import err, fail
from harness.identity import SchemeError
from harness.registry import BadNameError, DuplicateNameError, UnknownNameError
from harness.task import ConfigError

try:  # typer 0.2x runs on a click of its own
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # earlier typer runs on click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

# Bad input from the user: one line on stderr and exit status 2, whichever command met it.
USER_ERRORS = (
    UnknownNameError,
    BadNameError,
    SchemeError,
    DuplicateNameError,
    ConfigError,
    store.StoreError,
    MissingAssetError,
    EngineError,
)


class _Commands(TyperGroup):
    """The one error handler of every command: user errors become one line and exit status 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            raise fail(str(e)) from None
        except NoArgsIsHelpError:
            raise
        except UsageError as e:  # a subcommand's bad option value or missing option: one line, not a box
            raise fail(usage_line(e)) from None
        except OSError as e:
            full = store.disk_error(e, e.filename or "the disk being written")
            if full is None:
                raise
            raise fail(str(full)) from None

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except NoArgsIsHelpError:
            raise
        except UsageError as e:  # the top-level options
            raise fail(usage_line(e)) from None


def usage_line(e: UsageError) -> str:
    command = e.ctx.command_path if e.ctx is not None else "harness"
    return f"{command}: {e.format_message()} (see {command} --help)"


F = TypeVar("F", bound=Callable[..., Any])


def on_interrupt(left: str) -> Callable[[F], F]:
    """The one interrupt handler: Ctrl-C or SIGTERM during the command ends it with one line saying what the
    interrupt left behind (`left`), and exit status 130."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def interruptible(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                raise fail(f"interrupted; {left}", code=130) from None

        return interruptible  # type: ignore[return-value]

    return decorate


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler or `kill` stopping the job) unwinds like Ctrl-C: nothing half-written stays behind."""
    raise KeyboardInterrupt


app = typer.Typer(
    cls=_Commands, help="Benchmark and evaluation harness for Best-of-N alignment methods.", no_args_is_help=True
)


def _set_verbosity(ctx: typer.Context, verbose: bool) -> None:
    """Log at INFO with -v, else WARNING. `harness -v CMD` sets it before the command's options are read, `harness
    CMD -v` while they are, so either place works."""
    ctx.meta["verbose"] = verbose
    # vLLM logs every engine step at INFO; its engine-core process reads the level from the environment, where
    # a level the user set is left alone
    if "VLLM_LOGGING_LEVEL" not in os.environ or ctx.meta.get("vllm_level_ours"):
        os.environ["VLLM_LOGGING_LEVEL"] = "INFO" if verbose else "WARNING"
        ctx.meta["vllm_level_ours"] = True
    logging.basicConfig(format="%(message)s", handlers=[RichHandler(console=err, show_path=False)])
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)


def _verbose_flag(ctx: typer.Context, value: bool) -> None:
    if value:
        _set_verbosity(ctx, True)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    _set_verbosity(ctx, verbose)
    signal.signal(signal.SIGTERM, _terminate)


# Every command takes -v too (its value is read from the context, where the top-level -v also lands).
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", callback=_verbose_flag, help="Log progress details (as harness -v does).")
]
OutOption = Annotated[str, typer.Option("--out", help="Results store directory.")]
# Commands that write beside a stored run: RUN must lie in --out where it is given.
RunStoreOption = Annotated[
    str | None,
    typer.Option(
        "--out",
        help="Results store directory, which RUN must lie in (default: RUN's own store; runs to find a hash).",
    ),
]
TaskOption = Annotated[str, typer.Option("--task", help="Registered task (see `harness ls tasks`).")]
RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="A run directory or a config hash (prefix).")]

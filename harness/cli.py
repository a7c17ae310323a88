"""The `harness` command line. Heavy libraries (torch, transformers) load only inside commands that run models.

(Over 300 lines on purpose: one thin function per command over the module that does its work, with the one error
handler and the tables they share.)"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from harness import store
from harness.assets import MissingAssetError
from harness.backends import EngineError
from harness.confighelp import describe
from harness.confighelp import show as show_value
from harness.metrics import TRAIN, preferred, split_id
from harness.registry import BadNameError, DuplicateNameError, Registry, UnknownNameError
from harness.task import MAX_SAMPLES, ConfigError

try:  # typer 0.2x runs on a click of its own
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # earlier typer runs on click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

if TYPE_CHECKING:
    from harness.sweep import Outcome

console = Console()
err = Console(stderr=True)

# Bad input from the user: one line on stderr and exit status 2, whichever command met it.
USER_ERRORS = (
    UnknownNameError,
    BadNameError,
    DuplicateNameError,
    ConfigError,
    store.StoreError,
    MissingAssetError,
    EngineError,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    line = " ".join(str(message).split())
    err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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


app = typer.Typer(
    cls=_Commands, help="Benchmark and evaluation harness for Best-of-N alignment methods.", no_args_is_help=True
)
OutOption = Annotated[str, typer.Option("--out", help="Results store directory.")]
# Commands that write beside a stored run: RUN must lie in --out where it is given.
RunStoreOption = Annotated[
    str | None,
    typer.Option(
        "--out",
        help="Results store directory, which RUN must lie in (default: RUN's own store; runs to find a hash).",
    ),
]


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


# Every command takes -v too (its value is read from the context, where the top-level -v also lands).
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", callback=_verbose_flag, help="Log progress details (as harness -v does).")
]


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    _set_verbosity(ctx, verbose)
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler or `kill` stopping the job) unwinds like Ctrl-C: nothing half-written stays behind."""
    raise KeyboardInterrupt


MAX_VALUE_CHARS = 1000  # a -p value


def parse_value(text: str) -> Any:
    """A -p value as YAML 1.2 reads a plain scalar or a flat flow list (numbers as JSON reads them, strings,
    booleans, [1, 2]: harness.yaml12); tags, anchors and mappings are refused, so that a value never constructs
    anything."""
    import yaml

    from harness import yaml12

    refused = (yaml.TagToken, yaml.AnchorToken, yaml.AliasToken, yaml.KeyToken)
    scalar = (int, float, str, bool, type(None))
    if len(text) > MAX_VALUE_CHARS:
        raise ConfigError(f"a value of {len(text)} characters (at most {MAX_VALUE_CHARS})")
    try:
        if any(isinstance(t, refused) for t in yaml.scan(text, Loader=yaml12.Loader)):
            raise ValueError
        value = yaml12.load(text)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(f"value {text!r}: {e.problem}") from None
    except (yaml.YAMLError, ValueError):
        value = ...
    if not (isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))):
        raise ConfigError(f"value {text!r} is not a number, a string, a boolean or a flat list")
    return value


def _parse_params(params: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} is not KEY=VALUE")
        try:
            parsed = parse_value(value)
        except ConfigError as e:
            raise ConfigError(f"--param {key}: {e}") from None
        if key in out and not same_value(out[key], parsed):
            raise ConfigError(f"--param {key}={show_value(out[key])} and --param {item} disagree: give {key} once")
        out[key] = parsed
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal as parsed, where a boolean never equals a number (true is no 1)."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _seed(seed: int) -> int:
    from harness.seeding import MAX_SEED

    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: a seed is a whole number from 0 to {MAX_SEED}")
    return seed


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


FAMILIES = ("reward", "gold_reward", "win_rate", "kl")  # the order of a run's metrics in its tables


def in_order(names: Iterable[str]) -> list[str]:
    """Metric names grouped by what they measure (each estimate beside its exact value), whatever order a dict
    holds them in: a fresh run's results and the same results read back from results.json (whose keys are
    sorted) print alike. Other metrics (a task's own) follow, by name; the same on training prompts after all."""

    def key(name: str) -> tuple[bool, int, str]:
        on_train = name.endswith(TRAIN)
        base = name.removesuffix(TRAIN).removesuffix("_exact")
        family = next((i for i, f in enumerate(FAMILIES) if base == f or base.startswith(f"{f}_")), len(FAMILIES))
        return on_train, family, name

    return sorted(names, key=key)


def metrics_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"{results['method']} on {results['task']['name']} (seed {results['seed']})")
    for col in ("metric", "mean", "se", "95% CI", "prompts"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in (results["metrics"][k] for k in in_order(results["metrics"])):
        se = "-" if m["se"] in (None, 0.0) else f"{m['se']:.4f}"
        lo, hi = m["ci95"]
        table.add_row(metric_name(m["id"]), f"{m['mean']:.4f}", se, f"[{lo:.4f}, {hi:.4f}]", str(m["n_prompts"]))
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


@app.command()
def run(
    method: Annotated[str, typer.Option(help="Registered method (see `harness ls methods`).")],
    task: Annotated[str, typer.Option(help="Registered task (see `harness ls tasks`).")],
    n: Annotated[str | None, typer.Option("--n", help="Shortcut for --param n=N (samples per output).")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="Method hyperparameter KEY=VALUE.")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="Seed of every random stream of the run.")] = 0,
    samples: Annotated[int | None, typer.Option(help="Outputs per prompt to evaluate (task default).")] = None,
    pool_size: Annotated[
        int | None, typer.Option(help="Reference pool samples per prompt; best-of-n reads n <= it (task default).")
    ] = None,
    out: OutOption = "runs",
    force: Annotated[bool, typer.Option(help="Recompute even if this config already finished.")] = False,
    verbose: Verbose = False,
) -> None:
    """Align with one method on one task, evaluate it and store the run."""
    from harness.run import execute, resolve

    params = _parse_params(param)
    if n is not None:
        value = parse_value(n)
        if "n" in params and not same_value(params["n"], value):
            raise ConfigError(f"--n {n} and --param n={show_value(params['n'])} disagree: give one of them")
        params["n"] = value
    root = store.root(out)
    try:
        overrides = {"samples_per_prompt": samples, "pool_size": pool_size}
        spec = resolve(
            task, method, params, seed=seed, evaluation={k: v for k, v in overrides.items() if v is not None}
        )
        result = execute(spec, root, force=force)
    except FloatingPointError as e:
        raise fail(str(e), code=1) from None
    except KeyboardInterrupt:
        raise fail(
            "interrupted; nothing was written to the results store (training resumes from its "
            "last checkpoint when the same command runs again)",
            code=130,
        ) from None
    if result.worker:
        return
    print_results(result.results)
    state = "already finished, not recomputed (use --force)" if result.reused else "written"
    console.print(f"run: {result.path}  [dim]({state})[/]", highlight=False)


@app.command("evaluate")
def evaluate_run(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run directory or a config hash (prefix).")],
    samples: Annotated[int | None, typer.Option(help="Outputs per prompt to evaluate (the run's setting).")] = None,
    pool_size: Annotated[
        int | None, typer.Option(help="Reference pool samples per prompt (the run's setting).")
    ] = None,
    reference_samples: Annotated[
        int | None, typer.Option(help="Held-out reference samples per prompt for win rates (the run's setting).")
    ] = None,
    train_prompts: Annotated[
        int | None,
        typer.Option(help="Evaluate a trained policy on this many of its training prompts too (the run's setting)."),
    ] = None,
    out: RunStoreOption = None,
    trust: Annotated[
        bool, typer.Option(help="Build the run's task even if its builder is no registered task's (runs its code).")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Evaluate a stored run's policy again (its saved weights; nothing is retrained), e.g. with more samples.

    The result goes to <run>/evaluations/<hash>/ beside the run's own results, which stay as they are."""
    from harness.run import reevaluate

    overrides = {
        "samples_per_prompt": samples,
        "pool_size": pool_size,
        "reference_samples": reference_samples,
        "train_prompts": train_prompts,
    }
    try:
        path = stored_run(run_ref, out)
        result = reevaluate(path, {k: v for k, v in overrides.items() if v is not None}, trust=trust)
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was written", code=130) from None
    print_results(result.results)
    state = "already evaluated with these settings" if result.reused else "written"
    console.print(f"evaluation: {result.path}  [dim]({state})[/]", highlight=False)


def stored_run(ref: str, out: str | None) -> Path:
    """The run `ref` (a directory, or a config hash in --out, by default runs), which must lie in --out where it is
    given: what a command computes from it is written beside it."""
    path = store.find_run(store.root(out or "runs"), ref)
    return path if out is None else store.in_store(path, store.root(out))


@app.command()
def offtarget(
    run_ref: Annotated[
        str | None, typer.Argument(metavar="[RUN]", help="A run directory or a config hash (prefix).")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Instead of RUN: every finished run of this task.")] = None,
    tasks: Annotated[
        str,
        typer.Option(help="Comma-separated lm-eval tasks over the run's weights; '' for the harness's metrics only."),
    ] = "harness_imdb_heldout",
    limit: Annotated[int | None, typer.Option(min=1, help="Documents per lm-eval task (default: all).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="lm-eval batch size.")] = 8,
    out: RunStoreOption = None,
    force: Annotated[bool, typer.Option(help="Evaluate again even if these settings were evaluated.")] = False,
    trust: Annotated[
        bool, typer.Option(help="Build a run's task even if its builder is no registered task's (runs its code).")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Off-target effects of a stored run: length, distinct-n and perplexity under pi_ref of its outputs, and
    lm-eval tasks over its weights. Stored beside the run (offtarget.json), and so on its leaderboard."""
    from harness.offtarget import offtarget as evaluate_offtarget

    if (run_ref is None) == (task is None):
        raise fail("give either RUN or --task")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    root = store.root(out or "runs")
    try:
        if run_ref is not None:
            paths = [stored_run(run_ref, out)]
        else:
            paths = [
                store.in_store(path, root)
                for path, _, results in store.load_runs(root)
                if results["task"]["name"] == task
            ]
            if not paths:
                raise store.StoreError(f"no finished runs of task {task!r} under {root}")
        for path in paths:
            entry = evaluate_offtarget(path, names, limit=limit, batch_size=batch_size, force=force, trust=trust)
            print_offtarget(path, entry)
    except ValueError as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; the run being evaluated is as it was", code=130) from None


def offtarget_table(path: Path, entry: dict[str, Any]) -> Table:
    table = Table(title=f"off-target: {path}")
    for col in ("metric", "mean", "95% CI"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in (entry["metrics"][k] for k in in_order(entry["metrics"])):
        lo, hi = m["ci95"]
        table.add_row(metric_name(m["id"]), f"{m['mean']:.4f}", f"[{lo:.4f}, {hi:.4f}]")
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


@app.command()
def export(
    task: Annotated[str, typer.Option(help="Registered task (see `harness ls tasks`).")],
    to: Annotated[Path, typer.Option("--to", help="The outputs file to write (JSON Lines; replaced if it exists).")],
    model: Annotated[
        str | None,
        typer.Option(help="A transformers model or peft adapter directory; default: the task's reference policy."),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(min=1, max=MAX_SAMPLES, help="Outputs per prompt (the task's samples_per_prompt).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: the outputs that a run of the checkpoint with it evaluates.")] = 0,
    verbose: Verbose = False,
) -> None:
    """Write a policy's samples on a task's evaluation prompts as an outputs file (one JSON object per output:
    prompt_id, prompt, prompt_tokens, completion, tokens, logprob), which `harness run --method external -p
    outputs=FILE` ranks.

    The format, and how to write such a file from a model the harness cannot run: docs/external.md."""
    from harness import outputs
    from harness.task import build_task, load_task

    if not to.parent.is_dir():
        raise ConfigError(f"--to {str(to)!r}: no such directory {str(to.parent)!r}")
    config = load_task(task)
    built = build_task(config)
    try:
        lines = outputs.export(
            built, Path(model) if model else None, samples or config.evaluation.samples_per_prompt, _seed(seed)
        )
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was written", code=130) from None
    store.write_jsonl(to, lines)
    console.print(f"wrote {len(lines)} outputs of {len(built.prompts)} prompts of {task} to {to}", highlight=False)


class Executor(StrEnum):
    local = "local"
    ray = "ray"


@app.command()
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
    try:
        if executor is Executor.ray:
            outcomes = sweeps.run_ray(plan, root, address, force, on_done=report)
        else:
            outcomes = sweeps.run_local(plan, root, force, on_done=report)
    except KeyboardInterrupt:
        raise fail("interrupted; finished cells are stored, the others resume when the sweep runs again", 130) from None
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


def cell_line(outcome: Outcome) -> str:
    """'toy bon n=4 seed 0: 2.1 s, reward 2.3750 (exact), win_rate 0.7012 (exact), kl 0.5102 (exact)': the
    leaderboard's headline value of each metric the run has, with its source."""
    from harness.leaderboard.table import SOURCES

    c = outcome.cell
    head = " ".join([c.task, c.method, *(f"{k}={show_value(v)}" for k, v in c.params.items()), f"seed {c.seed}"])
    if outcome.error:
        return f"{head}: failed: {outcome.error}"
    parts = ["reused" if outcome.reused else f"{outcome.seconds:.1f} s"]
    for column, sources in SOURCES.items():
        found = next(((key, source) for key, source in sources if key in outcome.metrics), None)
        if found is not None:
            parts.append(f"{column} {outcome.metrics[found[0]]:.4f} ({found[1]})")
    return f"{head}: {', '.join(parts)}"


board_app = typer.Typer(help="Leaderboards of a task from the results store.", no_args_is_help=True)
app.add_typer(board_app, name="leaderboard")


@board_app.callback()
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


@board_app.command("build")
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
    df = leaderboard.build(store.root(out), task, boards if with_published else None, reevaluated)
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


def print_published(dest: Path, task: str) -> None:
    """How many published runs `--with-published` read (each checked against the results record)."""
    from harness import leaderboard

    runs = leaderboard.load_published(dest, task)
    console.print(f"read {len(runs)} published runs from {dest / task / 'results.jsonl'}", highlight=False)


@board_app.command("publish")
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


@app.command()
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
    try:
        if out is None:
            with tempfile.TemporaryDirectory(prefix="harness-reproduce-") as scratch:
                outcomes = reproducing.reproduce(runs, Path(scratch), tol, on_done=print_reproduced)
        else:
            outcomes = reproducing.reproduce(runs, store.root(out), tol, on_done=print_reproduced)
    except KeyboardInterrupt:
        raise fail("interrupted; the cells reproduced so far are printed above", code=130) from None
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


@app.command()
def constraints(verbose: Verbose = False) -> None:
    """Print a pip constraints file of the exact versions installed here (every dependency of bon-harness and
    every library that can change a number), e.g. `harness constraints > leaderboards/constraints.txt`."""
    from harness.provenance import constraints as pins

    console.out(pins(), end="", highlight=False)


pool_app = typer.Typer(help="The shared reference pool of a task.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")


@pool_app.callback()
def pool(verbose: Verbose = False) -> None:
    """The shared reference pool of a task."""


@pool_app.command("build")
def pool_build(
    task: Annotated[str, typer.Option(help="Registered task (see `harness ls tasks`).")],
    m: Annotated[int | None, typer.Option("--m", min=1, help="Samples per prompt (task's pool_size).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pool (the run seed that will reuse it).")] = 0,
    out: OutOption = "runs",
    verbose: Verbose = False,
) -> None:
    """Sample (or find) the reference pool and the held-out reference samples of a task's prompts."""
    from harness.pool import PoolCache
    from harness.run import with_evaluation
    from harness.task import build_task, load_task
    from harness.threads import pinned, run_threads

    root = store.root(out)
    config = with_evaluation(load_task(task), {"pool_size": m} if m is not None else None)  # m within its bounds
    _seed(seed)
    try:
        store.ensure_writable(root)
        pools = PoolCache(root, run_threads())
        with pinned(pools.threads):  # as a run samples it
            built = build_task(config)
            size = config.evaluation.pool_size
            pools.get(built, size, seed, stream="pool")
            pools.get(built, config.evaluation.reference_samples, seed, stream="held-out")
    except KeyboardInterrupt:
        raise fail("interrupted; no partial pool was written", code=130) from None
    console.print(f"pool: {pools.path(built, size, seed, 'pool')}", highlight=False)
    console.print(f"sampled {pools.sampled} completions ({'reused from disk' if not pools.sampled else 'now cached'})")


@app.command()
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


class Listable(StrEnum):
    methods = "methods"
    tasks = "tasks"
    runs = "runs"


@app.command("ls")
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
            return
        _names(METHODS)
    elif what is Listable.tasks:
        from harness.task import TASKS

        _names(TASKS)
    else:
        table = Table()
        for col in ("task", "method", "config_hash", "seed", "win_rate", "kl", "path"):
            table.add_column(col)
        for path, _, r in store.load_runs(store.root(out)):
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
        console.print(table)


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


def _names(registry: Any) -> None:
    """A registry's names, one per line; one that cannot be loaded says why on its line."""
    for name in registry.names():
        problem = registry.problem(name)
        if problem is None:
            console.print(name, highlight=False)
        else:
            console.print(f"{name}  [red](broken: {escape(problem)})[/]", highlight=False)


@app.command()
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run directory or a config hash (prefix).")],
    out: OutOption = "runs",
    verbose: Verbose = False,
) -> None:
    """Show a stored run's config, metrics (off-target ones included, where evaluated) and cost."""
    path = store.find_run(store.root(out), run_ref)
    config, results = store.read_run(path)
    console.print(f"run: {path}", highlight=False)
    console.print_json(data={"method": config["method"], "seed": config["seed"], "task": results["task"]})
    print_results(results)
    if "offtarget" in results:
        print_offtarget(path, results["offtarget"])
    console.print_json(data={"cost": results["cost"], "provenance": results["provenance"]})

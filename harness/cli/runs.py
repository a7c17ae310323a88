"""The commands on one run: `run` computes and stores it, `evaluate` evaluates its policy again, `offtarget`
measures its off-target effects, `show` prints it, and `export` writes a policy's outputs for `run --method
external`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness import store
from harness.cli.app import OutOption, RunArgument, RunStoreOption, TaskOption, Verbose, on_interrupt
from harness.cli.params import parse_params
from harness.cli.render import console, fail, print_offtarget, print_results
from harness.task import MAX_SAMPLES, ConfigError


@on_interrupt(
    "nothing was written to the results store (training resumes from its last checkpoint when the same command "
    "runs again)"
)
def run(
    method: Annotated[str, typer.Option(help="Registered method (see `harness ls methods`).")],
    task: TaskOption,
    n: Annotated[str | None, typer.Option("--n", help="Shortcut for --param n=N (samples per output).")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="Method hyperparameter KEY=VALUE.")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="Seed of every random stream of the run.")] = 0,
    samples: Annotated[int | None, typer.Option(help="Outputs per prompt to evaluate (task default).")] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(
            help="Evaluation pool: reference samples per evaluation prompt; best-of-n reads n <= it (task default; "
            "a training method's own pool is -p train_pool_size)."
        ),
    ] = None,
    out: OutOption = "runs",
    force: Annotated[bool, typer.Option(help="Recompute even if this config already finished.")] = False,
    verbose: Verbose = False,
) -> None:
    """Align with one method on one task, evaluate it and store the run."""
    from harness.run import execute, resolve

    params = parse_params(param, n)
    root = store.root(out)
    overrides = {"samples_per_prompt": samples, "pool_size": pool_size}
    try:
        spec = resolve(
            task, method, params, seed=seed, evaluation={k: v for k, v in overrides.items() if v is not None}
        )
        result = execute(spec, root, force=force)
    except FloatingPointError as e:
        raise fail(str(e), code=1) from None
    if result.worker:
        return
    print_results(result.results)
    state = "already finished, not recomputed (use --force)" if result.reused else "written"
    console.print(f"run: {result.path}  [dim]({state})[/]", highlight=False)


@on_interrupt("nothing was written")
def evaluate(
    run_ref: RunArgument,
    samples: Annotated[int | None, typer.Option(help="Outputs per prompt to evaluate (the run's setting).")] = None,
    pool_size: Annotated[
        int | None, typer.Option(help="Evaluation pool: reference samples per evaluation prompt (the run's setting).")
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
    path = stored_run(run_ref, out)
    result = reevaluate(path, {k: v for k, v in overrides.items() if v is not None}, trust=trust)
    print_results(result.results)
    state = "already evaluated with these settings" if result.reused else "written"
    console.print(f"evaluation: {result.path}  [dim]({state})[/]", highlight=False)


def stored_run(ref: str, out: str | None) -> Path:
    """The run `ref` (a directory, or a config hash in --out, by default runs), which must lie in --out where it is
    given: what a command computes from it is written beside it."""
    path = store.find_run(store.root(out or "runs"), ref)
    return path if out is None else store.in_store(path, store.root(out))


@on_interrupt("the run being evaluated is as it was")
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
            paths = [p for p, _, results in store.load_runs(root) if results["task"]["name"] == task]
            paths = [store.in_store(p, root) for p in paths]
            if not paths:
                raise store.StoreError(f"no finished runs of task {task!r} under {root}")
        for path in paths:
            entry = evaluate_offtarget(path, names, limit=limit, batch_size=batch_size, force=force, trust=trust)
            print_offtarget(path, entry)
    except ValueError as e:
        raise fail(str(e)) from None


def show(run_ref: RunArgument, out: OutOption = "runs", verbose: Verbose = False) -> None:
    """Show a stored run's config, metrics (off-target ones included, where evaluated) and cost."""
    path = store.find_run(store.root(out), run_ref)
    config, results = store.read_run(path)
    console.print(f"run: {path}", highlight=False)
    console.print_json(data={"method": config["method"], "seed": config["seed"], "task": results["task"]})
    print_results(results)
    if "offtarget" in results:
        print_offtarget(path, results["offtarget"])
    console.print_json(data={"cost": results["cost"], "provenance": results["provenance"]})


@on_interrupt("nothing was written")
def export(
    task: TaskOption,
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
    from harness.run import check_seed
    from harness.task import build_task, load_task

    if not to.parent.is_dir():
        raise ConfigError(f"--to {str(to)!r}: no such directory {str(to.parent)!r}")
    config = load_task(task)
    built = build_task(config)
    per_prompt = samples or config.evaluation.samples_per_prompt
    lines = outputs.export(built, Path(model) if model else None, per_prompt, check_seed(seed, f"--seed {seed}"))
    store.write_jsonl(to, lines)
    console.print(f"wrote {len(lines)} outputs of {len(built.prompts)} prompts of {task} to {to}", highlight=False)

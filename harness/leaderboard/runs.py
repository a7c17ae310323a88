"""The runs behind a board: the complete runs of a task in a results store, the published runs of a board
(its results.jsonl, every line checked against the results record), and the rows they fall into (`row_key`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import record, store
from harness.identity import identity

PUBLISHED, LOCAL = "published", "local"  # where a run was read from: a published board, or the results store


def load_runs(out: Path, task: str, reevaluated: bool = False) -> list[dict[str, Any]]:
    """config.json and results.json of every complete run of `task` in the store. With `reevaluated`, a run that
    has been evaluated again (`harness evaluate`) is read through its latest re-evaluation: its results, and its
    config with the evaluation settings of that re-evaluation (so that rows never mix evaluation settings)."""
    runs = []
    for path, config, results in store.load_runs(out):
        if results["task"]["name"] != task:
            continue
        again = store.latest_evaluation(path) if reevaluated else None
        if again is not None:
            results = again[1]
            config = config | {"task": config["task"] | {"evaluation": results["evaluation"]}}
        runs.append(
            {
                "path": path,
                "config": config,
                "results": results,
                "train_log": store.read_train_log(path),
                "origin": LOCAL,
            }
        )
    if not runs:
        raise store.StoreError(f"no finished runs of task {task!r} under {out} (run `harness sweep` first)")
    return runs


def load_published(dest: Path, task: str) -> list[dict[str, Any]]:
    """The runs behind the published board `dest/<task>/` (its results.jsonl), marked as published; every line is
    checked against the results record (harness.record), so that a line no publication wrote is refused."""
    path = dest / task / "results.jsonl"
    if not path.is_file():
        raise store.StoreError(f"no published leaderboard of task {task!r}: {path} does not exist")
    return [published_run(line, f"{path}:{i}", task) for i, line in enumerate(store.read_jsonl(path), 1)]


def published_run(line: Any, where: str, task: str) -> dict[str, Any]:
    """One line of a published results.jsonl, {"config": config.json, "results": results.json} of a run of `task`."""
    remedy = "it is not what `harness leaderboard publish` wrote: publish the board again from its store"
    if (
        not isinstance(line, dict)
        or set(line) - {"train_log"} != {"config", "results"}
        or not isinstance(line["config"], dict)
    ):
        raise store.CorruptError(
            f"{where}: not a published run (keys config, results and optionally train_log); {remedy}"
        )
    config, results = line["config"], line["results"]
    try:
        record.checked(results, where)
    except record.RecordError as e:
        raise store.CorruptError(f"{e}; {remedy}") from None
    task_, method = config.get("task"), config.get("method")
    if (
        not isinstance(task_, dict)
        or not isinstance(method, dict)
        or task_.get("name") != task
        or method.get("name") != results["method"]
        or config.get("seed") != results["seed"]
        or results["task"]["name"] != task
    ):
        raise store.CorruptError(f"{where}: its config is not that of a {task} run of its results; {remedy}")
    train_log = line.get("train_log", [])
    if not isinstance(train_log, list):
        raise store.CorruptError(f"{where}: its train_log is not a list; {remedy}")
    return {"config": config, "results": results, "train_log": train_log, "origin": PUBLISHED}


def row_hash(run: dict[str, Any]) -> str:
    """The `config_hash` column of the run's row."""
    return store.config_hash(row_key(run["config"]))


def row_key(config: dict[str, Any]) -> dict[str, Any]:
    """What the seeds of one row share: the run's identity (harness.identity.identity, which leaves out the task's
    builder) without its seed, hash scheme and the method's implementation, so that runs of one method installed
    two ways with the same scientific settings share a row."""
    return {k: v for k, v in identity(config).items() if k not in ("seed", "hash_scheme", "implementation")}


def merge(local: list[dict[str, Any]], published: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Local runs and published ones; a local row replaces the published row with the same settings."""
    mine = {row_hash(r) for r in local}
    return local + [r for r in published if row_hash(r) not in mine]


def gather(out: Path, task: str, published: Path | None = None, reevaluated: bool = False) -> list[dict[str, Any]]:
    """The runs of a board: the store's, and the published ones where asked."""
    if published is None:
        return load_runs(out, task, reevaluated)
    try:
        local = load_runs(out, task, reevaluated)
    except store.StoreError:
        local = []  # a board of the published rows alone
    return merge(local, load_published(published, task))

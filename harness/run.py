"""Run one cell: resolve the config, align with the method, evaluate, store. Nothing here does math."""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import harness
from harness import store
from harness.evaluate import evaluate
from harness.method import METHODS, Method, MethodConfig, RunContext
from harness.pool import PoolCache
from harness.task import TaskConfig, build_task, load_task

log = logging.getLogger(__name__)

LIBRARIES = ("numpy", "scipy", "torch", "transformers", "pydantic")


class ConfigError(ValueError):
    """A bad value in a run's configuration; the message names the field and what is accepted."""


@dataclass
class RunSpec:
    task: TaskConfig
    method: type[Method]
    method_name: str
    config: MethodConfig
    seed: int

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config whose hash names the run."""
        return {
            "task": self.task.model_dump(exclude={"methods"}),
            "method": {"name": self.method_name, **self.config.model_dump()},
            "seed": self.seed,
        }

    def hash(self) -> str:
        return store.config_hash(self.resolved())


def resolve(
    task: str,
    method: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    evaluation: dict[str, Any] | None = None,
) -> RunSpec:
    """Validate everything before any work: names, method hyperparameters (task defaults, then `params`),
    evaluation settings (task defaults, then `evaluation`)."""
    task_config = load_task(task)
    if evaluation:
        try:
            merged_eval = type(task_config.evaluation).model_validate(task_config.evaluation.model_dump() | evaluation)
        except ValidationError as e:
            raise ConfigError(_one_line("evaluation settings", e)) from None
        task_config = task_config.model_copy(update={"evaluation": merged_eval})
    method_cls = METHODS.get(method)
    merged = task_config.methods.get(method, {}) | (params or {})
    try:
        config = method_cls.Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_one_line(f"{method} config", e)) from None
    return RunSpec(task=task_config, method=method_cls, method_name=method, config=config, seed=seed)


def _one_line(what: str, e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc} = {err.get('input')!r}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


@dataclass
class RunResult:
    path: Path
    results: dict[str, Any]
    reused: bool


def execute(spec: RunSpec, out: Path, force: bool = False) -> RunResult:
    """Run the cell into the store, or return the stored run when this config already finished."""
    store.ensure_writable(out)
    final = store.run_path(out, spec.task.name, spec.method_name, spec.hash())
    if store.is_complete(final) and not force:
        log.info("already finished: %s (use --force to recompute)", final)
        return RunResult(final, store.read_json(final / store.RESULTS), reused=True)

    started, t0 = datetime.now(UTC), time.perf_counter()
    with store.staged(final) as stage:
        store.write_json(stage / store.CONFIG, spec.resolved())
        log.info("building task %s (version %d)", spec.task.name, spec.task.version)
        task = build_task(spec.task)
        pools = PoolCache(out)
        checkpoints = out / ".checkpoints" / spec.task.name / spec.method_name / spec.hash()
        ctx = RunContext(task=task, seed=spec.seed, out_dir=stage, pools=pools, checkpoint_dir=checkpoints)
        policy = spec.method(spec.config).align(ctx)
        evaluation = evaluate(task, policy, spec.seed, pools)
        store.write_jsonl(stage / store.SAMPLES, evaluation.records)
        results = {
            "harness_version": harness.__version__,
            "task": {"name": spec.task.name, "version": spec.task.version, "metadata": task.metadata},
            "method": spec.method_name,
            "config_hash": spec.hash(),
            "seed": spec.seed,
            "metrics": evaluation.metrics,
            "bon_curve": evaluation.bon_curve,
            "cost": evaluation.cost,
            "provenance": provenance(),
            "timing": {"started_at": started.isoformat(), "wall_seconds": round(time.perf_counter() - t0, 3)},
        }
        store.write_json(stage / store.RESULTS, results)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing left to resume
    return RunResult(final, results, reused=False)


def provenance() -> dict[str, Any]:
    libs: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(harness.__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "python": platform.python_version(), "libraries": libs}

"""Run one cell: resolve the config, align with the method, evaluate, store. Nothing here does math."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import harness
from harness import seeding, store, threads
from harness.backends import require_backend
from harness.evaluate import Evaluation, evaluate
from harness.identity import HASH_SCHEME, current, identity, implementation
from harness.method import METHODS, AlignedPolicy, Method, MethodConfig, RunContext, TrainingCost
from harness.pool import PoolCache
from harness.provenance import provenance
from harness.record import Cost, Implementation, Provenance, RunRecord, TaskInfo, Timing
from harness.task import (
    ConfigError,
    Task,
    TaskConfig,
    build_task,
    builder,
    load_task,
    one_line,
    validation_fields,
)

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    task: TaskConfig
    method: type[Method]
    method_name: str
    config: MethodConfig
    seed: int
    threads: int = threads.DEFAULT  # torch's thread count while the run computes (harness.threads)

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config (config.json): the run's identity, whose hash names the run, and apart from
        it the method's operational settings. The method's version and the thread count are written only where
        they are not 1, so that the runs of version 1 at one thread keep the names they had before either was
        recorded."""
        operational = self.config.operational()
        version = {"version": self.method.version} if self.method.version != 1 else {}
        return {
            "hash_scheme": HASH_SCHEME,
            "task": self.task.model_dump(exclude={"methods"}),
            "method": {"name": self.method_name, **version, **self.config.model_dump(exclude=operational)},
            "implementation": implementation(self.method),
            "operational": self.config.model_dump(include=operational),
            "seed": self.seed,
        } | ({"threads": self.threads} if self.threads != threads.DEFAULT else {})

    def hash(self) -> str:
        return store.config_hash(identity(self.resolved()))


def resolve(
    task: str,
    method: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    evaluation: dict[str, Any] | None = None,
) -> RunSpec:
    """Validate everything before any work: names, method hyperparameters (task defaults, then `params`),
    evaluation settings (task defaults, then `evaluation`)."""
    check_seed(seed)
    task_config = with_evaluation(load_task(task), evaluation)
    builder(task_config)  # importable and callable, before any work
    require_backend(task_config.params)
    method_cls = METHODS.get(method)
    merged = task_config.methods.get(method, {}) | (params or {})
    try:
        config = method_cls.Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(one_line(f"{method} config", e, method_cls.Config), validation_fields(e)) from None
    return RunSpec(
        task=task_config,
        method=method_cls,
        method_name=method,
        config=config,
        seed=seed,
        threads=threads.run_threads(),
    )


def check_seed(seed: Any, given: str | None = None) -> int:
    """`seed`, where it is a whole number from 0 to seeding.MAX_SEED; else a ConfigError naming it as the user
    gave it (`given`, e.g. `--seed -1`; by default `seed = -1`)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= seeding.MAX_SEED:
        raise ConfigError(f"{given or f'seed = {seed!r}'}: a seed is a whole number from 0 to {seeding.MAX_SEED}")
    return seed


def with_evaluation(task_config: TaskConfig, overrides: dict[str, Any] | None) -> TaskConfig:
    """The task config with its evaluation settings updated by `overrides` (validated)."""
    if not overrides:
        return task_config
    try:
        merged = type(task_config.evaluation).model_validate(task_config.evaluation.model_dump() | overrides)
    except ValidationError as e:
        raise ConfigError(one_line("evaluation settings", e), validation_fields(e)) from None
    return task_config.model_copy(update={"evaluation": merged})


@dataclass
class RunResult:
    path: Path
    results: dict[str, Any]
    reused: bool
    worker: bool = False  # a non-main process of a multi-process run: it wrote nothing


def execute(spec: RunSpec, out: Path, force: bool = False) -> RunResult:
    """Run the cell into the store, or return the stored run when this config already finished. One process at
    a time writes a run: a second one waits for it and then finds the run finished. Torch computes with the
    spec's thread count (harness.threads)."""
    with threads.pinned(spec.threads):
        return _execute(spec, out, force)


def _execute(spec: RunSpec, out: Path, force: bool) -> RunResult:
    store.ensure_writable(out)
    final = store.run_path(out, spec.task.name, spec.method_name, spec.hash())
    checkpoints = store.checkpoint_dir(out, spec.task.name, spec.method_name, spec.hash())

    from harness.distributed import process_state

    if not process_state().is_main_process:
        # another process of a multi-process (accelerate) run: it trains its share; the main process evaluates
        # and writes the run
        with tempfile.TemporaryDirectory() as scratch:
            ctx = RunContext(build_task(spec.task), spec.seed, Path(scratch), PoolCache(out, spec.threads), checkpoints)
            spec.method(spec.config).align(ctx)
        return RunResult(final, {}, reused=False, worker=True)

    with store.run_lock(out, final):
        if store.is_complete(final) and not force:
            log.info("already finished: %s (use --force to recompute)", final)
            shutil.rmtree(checkpoints, ignore_errors=True)  # left by a writer killed after it stored the run
            return RunResult(final, store.read_run(final)[1], reused=True)
        if force:
            shutil.rmtree(checkpoints, ignore_errors=True)  # --force starts training afresh
        results = _compute(spec, out, final, checkpoints)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing left to resume
    return RunResult(final, results, reused=False)


def _compute(spec: RunSpec, out: Path, final: Path, checkpoints: Path) -> dict[str, Any]:
    started, t0 = datetime.now(UTC), time.perf_counter()
    with store.staged(final, out) as stage:
        store.write_json(stage / store.CONFIG, spec.resolved())
        log.info("building task %s (version %d)", spec.task.name, spec.task.version)
        task = build_task(spec.task)
        spec.config.check_task(task)  # settings that the built task cannot take: before any sampling or training
        pools = PoolCache(out, spec.threads)
        ctx = RunContext(task=task, seed=spec.seed, out_dir=stage, pools=pools, checkpoint_dir=checkpoints)
        policy = spec.method(spec.config).align(ctx)
        evaluation = evaluate(task, policy, spec.seed, pools)
        write_samples(stage, evaluation)
        record = RunRecord(
            harness_version=harness.__version__,
            task=TaskInfo(
                name=spec.task.name, version=spec.task.version, backend=backend_of(task), metadata=task.metadata
            ),
            method=spec.method_name,
            implementation=Implementation(**implementation(spec.method)),
            config_hash=spec.hash(),
            seed=spec.seed,
            **evaluated(evaluation, spec, task),
            timing=Timing(
                started_at=started.isoformat(),
                wall_seconds=round(time.perf_counter() - t0, 3),
                training_seconds=policy.training.seconds,
            ),
        )
        results = record.to_results()
        store.write_results(stage, results)
        store.seal(stage, later=(store.OFFTARGET,))
    return results


def evaluated(evaluation: Evaluation, spec: RunSpec, task: Task) -> dict[str, Any]:
    """The fields of a results record that an evaluation gives: its metrics, best-of-n curve and cost, and what
    computed them."""
    return {
        "metrics": evaluation.metrics,
        "bon_curve": evaluation.bon_curve,
        "cost": Cost(**evaluation.cost),
        "provenance": Provenance(**provenance(spec.threads, device_of(task))),
    }


def write_samples(stage: Path, evaluation: Evaluation) -> None:
    """samples.jsonl, and train_samples.jsonl where the policy was evaluated on training prompts too."""
    store.write_jsonl(stage / store.SAMPLES, evaluation.records)
    if evaluation.train_records:
        store.write_jsonl(stage / store.TRAIN_SAMPLES, evaluation.train_records)


def backend_of(task: Task) -> str | None:
    """The backend that sampled the reference policy (`hf`, `vllm`; None for a task's own policy, e.g. toy)."""
    return getattr(task.reference, "backend", None)


def device_of(task: Task) -> str:
    """The device of the task's model (`cpu`, `cuda:0`), or of its reference policy where the task has no model."""
    model = task.model if task.model is not None else getattr(task.reference, "model", None)
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if parameters is not None else None
    return str(first.device) if first is not None else "cpu"


def stored_spec(run_dir: Path) -> RunSpec:
    """The spec of a stored run, from its own config.json (not from the task's current YAML); a run computed by
    another version of its method than the installed one is refused."""
    config = store.read_config(run_dir)
    spec = spec_of(config)
    version = config["method"].get("version", 1)
    if version != spec.method.version:
        raise store.StoreError(
            f"run {run_dir} was computed by version {version} of method {spec.method_name!r}, and version "
            f"{spec.method.version} is installed: run it again (harness run) instead"
        )
    return spec


def spec_of(config: dict[str, Any]) -> RunSpec:
    """The spec of a resolved config (a stored or published config.json), with the installed method, its settings
    read under today's names (harness.identity.current)."""
    config = current(config)
    method = {k: v for k, v in config["method"].items() if k != "version"} | config.get("operational", {})
    name = method.pop("name")
    cls = METHODS.get(name)
    return RunSpec(
        task=TaskConfig.model_validate(config["task"]),
        method=cls,
        method_name=name,
        config=cls.Config.model_validate(method),
        seed=config["seed"],
        threads=config.get("threads", threads.DEFAULT),
    )


def load_aligned(run_dir: Path, spec: RunSpec, task: Task, pools: PoolCache) -> AlignedPolicy:
    """A stored run's aligned policy: the trained weights saved in its `policy/` directory, or, for an
    inference-only method (no training), the method aligned again (which trains nothing)."""
    _, results = store.read_run(run_dir)
    cost = results["cost"]
    if (run_dir / store.POLICY).is_dir():
        from harness.training.trained import load_trained

        seconds = results.get("timing", {}).get("training_seconds", cost.get("training_seconds", 0.0))
        training = TrainingCost(cost["training_steps"], cost["training_tokens"], seconds)
        return load_trained(task, run_dir / store.POLICY, training)
    if cost["training_steps"]:
        raise store.StoreError(f"run {run_dir} trained a policy but has no saved policy/ directory")
    return spec.method(spec.config).align(RunContext(task=task, seed=spec.seed, out_dir=run_dir, pools=pools))


def reevaluate(run_dir: Path, evaluation: dict[str, Any] | None = None, trust: bool = False) -> RunResult:
    """Evaluate a stored run's policy again, with its evaluation settings updated by `evaluation`, into
    `<run>/evaluations/<hash of the settings and seed>/` (results.json, samples.jsonl); the run's own files are
    left as they are. An evaluation that is already stored is returned as it is. The run's task is rebuilt only
    where its builder is a registered task's, or with `trust` (building runs the builder's code)."""
    out = store.store_of(run_dir)
    spec = stored_spec(run_dir)
    with threads.pinned(spec.threads):
        return _reevaluate(run_dir, out, spec, evaluation, trust)


def _reevaluate(run_dir: Path, out: Path, spec: RunSpec, evaluation: dict[str, Any] | None, trust: bool) -> RunResult:
    spec.task = with_evaluation(spec.task, evaluation)
    settings = spec.task.evaluation.model_dump()
    key = store.config_hash({"evaluation": settings, "seed": spec.seed})
    final = store.evaluation_path(out, run_dir, key)
    if store.is_complete(final):
        return RunResult(final, store.read_evaluation(final), reused=True)
    t0 = time.perf_counter()
    task = build_task(spec.task, trusted=trust)
    pools = PoolCache(out, spec.threads)
    policy = load_aligned(run_dir, spec, task, pools)
    result = evaluate(task, policy, spec.seed, pools)
    run = {k: v for k, v in store.read_run(run_dir)[1].items() if k != "offtarget"}  # the run's, not this one's
    # the run's record, with what this evaluation gives in place of the run's own evaluation
    record = RunRecord.model_validate(
        run
        | evaluated(result, spec, task)
        | {
            "task": run["task"] | {"backend": backend_of(task)},
            "evaluation": settings,
            "timing": run.get("timing", {})
            | {"started_at": datetime.now(UTC).isoformat(), "wall_seconds": round(time.perf_counter() - t0, 3)},
        }
    )
    results = record.to_results()
    with store.staged(final, out) as stage:
        write_samples(stage, result)
        store.write_results(stage, results)
        store.seal(stage)
    return RunResult(final, results, reused=False)

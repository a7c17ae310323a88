"""Off-target evaluation of a stored run: what aligning changed besides the reward.

Two parts, both stored in the run's offtarget.json (written atomically; the run's own files are not touched,
and the store reads the entry back as the results' "offtarget"):
- the harness's own metrics, from the run's stored outputs: mean length, distinct-n and the perplexity of the
  outputs under pi_ref, each a mean over prompts with a bootstrap 95% interval like every other metric;
- lm-eval (`lm_eval.simple_evaluate` with its HF model wrapper) on a list of lm-eval tasks over the run's
  weights, including `harness_imdb_heldout`, the perplexity of held-out IMDB reviews that ships with the harness
  (offline). A trained run is evaluated with its trained weights; an inference-time method (best-of-n) leaves
  the weights unchanged, so its likelihood-based scores are those of pi_ref, which is what the results say.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from harness import seeding, store
from harness.bon import argmax_random_ties
from harness.metrics import metric_id
from harness.stats import summarize

DISTINCT_N = (1, 2, 3)
DISTINCT_SET = 8  # independent outputs per set that distinct-n reads
LM_EVAL_TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
DEFAULT_LM_EVAL_TASKS = ("harness_imdb_heldout",)


def distinct(completions: list[tuple[int, ...]], n: int) -> float:
    """Distinct-n (Li et al. 2016): distinct token n-grams over all n-grams of a set of completions (1.0 when
    no completion is n tokens long)."""
    grams = [tuple(c[i : i + n]) for c in completions for i in range(len(c) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def independent_groups(
    rows: list[dict[str, Any]], k: int, n: int, rng: np.random.Generator
) -> list[list[tuple[int, ...]]]:
    """Outputs of one prompt in groups of independent draws of the run's policy (outputs of different groups may
    depend on each other):
    - sampled outputs: one group of all of them;
    - outputs picked from candidates of the shared pool (records with `candidates`, harness.selection: soft and
      regularized best-of-n): runs of consecutive outputs whose candidates are pairwise disjoint, a run ending
      where the next output's candidates meet its own (a round of the draw gives M // n such outputs);
    - best-of-n evaluated from the pool (weighted records of the whole pool): one group, the best of each of
      M // n disjoint random n-subsets of the pool (ties at random).
    Groups are formed from pool indices alone, never from what the outputs are, so each holds i.i.d. outputs."""
    if "candidates" in rows[0]:
        groups: list[list[tuple[int, ...]]] = [[]]
        used: set[int] = set()
        for r in rows:
            if used.intersection(r["candidates"]):
                groups.append([])
                used = set()
            groups[-1].append(tuple(r["tokens"]))
            used.update(r["candidates"])
        return groups
    w = np.array([r["weight"] for r in rows])
    if len(rows) == k and np.allclose(w, w[0]):
        return [[tuple(r["tokens"]) for r in rows]]
    rewards = np.array([r["reward"] for r in rows])
    subsets = rng.permutation(len(rows))[: len(rows) // n * n].reshape(-1, n)
    best = subsets[np.arange(len(subsets)), argmax_random_ties(rewards[subsets], rng)]
    return [[tuple(rows[j]["tokens"]) for j in best]]


def own_metrics(
    records: list[dict[str, Any]], k: int, n: int, seed: int, bootstrap: int = 2000
) -> tuple[dict[str, dict], list[str]]:
    """Length, distinct-n and perplexity under pi_ref of a run's outputs (its samples.jsonl records), and notes on
    what could not be computed.

    Records carry weights (equal for sampled outputs; best-of-n from the pool weighs every pooled output by the
    probability that best-of-n returns it): length and perplexity are weighted means per prompt. Distinct-n is a
    property of a set of independent outputs: it is the mean over disjoint sets of DISTINCT_SET independent
    outputs per prompt, each cut from one group of `independent_groups`, so that every method is read on sets of
    the same size and no set holds one pooled sample twice through the pool's reuse.
    """
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_prompt[r["prompt_id"]].append(r)
    rng = np.random.default_rng(seeding.derive_seed(seed, seeding.OFFTARGET))
    per_prompt: dict[str, list[float]] = defaultdict(list)
    too_few: int | None = None  # independent outputs per prompt, where fewer than distinct-n reads
    for rows in by_prompt.values():
        w = np.array([r["weight"] for r in rows])
        lengths = np.array([len(r["tokens"]) for r in rows], float)
        per_prompt["length"].append(float(w @ lengths / w.sum()))
        ref = np.array([r["ref_logprob"] for r in rows])
        per_prompt["ppl_ref"].append(float(np.exp(-(w @ ref) / (w @ lengths))) if w @ lengths > 0 else np.nan)
        groups = independent_groups(rows, k, n, rng)
        sets = [g[i : i + DISTINCT_SET] for g in groups for i in range(0, len(g) - DISTINCT_SET + 1, DISTINCT_SET)]
        if not sets:
            too_few = max(len(g) for g in groups)
        for m in DISTINCT_N:
            per_prompt[f"distinct_{m}"].append(float(np.mean([distinct(s, m) for s in sets])) if sets else np.nan)
    notes = []
    if too_few is not None:
        per_prompt = {name: v for name, v in per_prompt.items() if not name.startswith("distinct_")}
        source = (
            f"{n} candidates per output from the shared pool give"
            if "candidates" in records[0]
            else f"best-of-{n} from a pool of {len(rows)} gives"
        )
        notes.append(
            f"distinct_n not computed: {source} {too_few} independent outputs per prompt, fewer than the "
            f"{DISTINCT_SET} that distinct-n reads"
        )
    boot = np.random.default_rng(seeding.derive_seed(seed, seeding.OFFTARGET, seeding.BOOTSTRAP))
    metrics = {
        name: {"id": metric_id(name, 0), **summarize(np.array(values), boot, bootstrap).to_dict()}
        for name, values in per_prompt.items()
    }
    return metrics, notes


@cache
def _task_manager() -> Any:
    """lm-eval's task index with the harness's own tasks added (built once: it reads every task file)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(LM_EVAL_TASKS_DIR))


def check_lm_eval_tasks(tasks: list[str] | tuple[str, ...]) -> None:
    """Fail before any work where a task name is unknown to lm-eval and to the harness."""
    unknown = [t for t in tasks if t not in _task_manager().all_tasks]
    if unknown:
        raise ValueError(
            f"unknown lm-eval task {', '.join(map(repr, unknown))} (the harness ships: "
            f"{', '.join(DEFAULT_LM_EVAL_TASKS)}; `lm-eval ls tasks` lists lm-eval's own)"
        )


def lm_eval_scores(
    model: Any, tokenizer: Any, tasks: list[str], limit: int | None, batch_size: int
) -> dict[str, dict[str, float]]:
    """lm-eval's scores of a transformers model on `tasks` (the harness's own lm-eval tasks included), as
    {task: {metric: value}} with each metric's standard error where lm-eval gives one."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    check_lm_eval_tasks(tasks)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
    out = simple_evaluate(
        model=lm, tasks=tasks, limit=limit, task_manager=_task_manager(), log_samples=False, bootstrap_iters=1000
    )
    assert out is not None  # only None on non-main processes of a distributed lm-eval run
    scores: dict[str, dict[str, float]] = {}
    for task, values in out["results"].items():
        scores[task] = {
            key.split(",")[0]: float(v)
            for key, v in values.items()
            if "," in key and isinstance(v, int | float) and not isinstance(v, bool)
        }
    return scores


_REFERENCE_SCORES: dict[str, dict[str, dict[str, float]]] = {}  # lm-eval scores of a task's reference weights


def _weights(run_dir: Path, task: Any) -> tuple[Any, str]:
    """The transformers model of a run's policy, and which weights these are."""
    if (run_dir / store.POLICY).is_dir():
        from harness.method import TrainingCost
        from harness.training.trained import load_trained

        policy = load_trained(task, run_dir / store.POLICY, TrainingCost()).policy
        model = policy.model  # type: ignore[attr-defined]
        if hasattr(model, "merge_and_unload"):  # a LoRA adapter: fold it into the weights
            model = model.merge_and_unload()
        return model, "trained"
    if task.model is None:
        raise ValueError(f"task {task.config.name!r} has no transformers model to evaluate with lm-eval")
    return task.model, "reference (an inference-time method leaves the weights unchanged)"


def offtarget(
    run_dir: Path,
    tasks: list[str] | tuple[str, ...] = DEFAULT_LM_EVAL_TASKS,
    limit: int | None = None,
    batch_size: int = 8,
    force: bool = False,
    trust: bool = False,
) -> dict[str, Any]:
    """Off-target metrics of a stored run, stored beside it (returned as they are where the same settings were
    already evaluated, unless `force`). The run's task is rebuilt only where its builder is a registered
    task's, or with `trust`."""
    from harness import threads
    from harness.run import stored_spec
    from harness.task import build_task

    check_lm_eval_tasks(tasks)
    _, results = store.read_run(run_dir)
    settings = {"lm_eval_tasks": list(tasks), "limit": limit}
    if not force and results.get("offtarget", {}).get("settings") == settings:
        return results["offtarget"]
    spec = stored_spec(run_dir)
    records = store.read_samples(run_dir)
    evaluation = spec.task.evaluation
    n = results["cost"]["samples_per_output"]
    metrics, notes = own_metrics(records, evaluation.samples_per_prompt, n, spec.seed, evaluation.bootstrap)
    entry: dict[str, Any] = {"settings": settings, "metrics": metrics, "notes": notes}
    if tasks and results["cost"].get("outputs_only"):
        notes.append("lm-eval not run: the run's outputs came from a file, with no weights to evaluate")
    elif tasks:
        with threads.pinned(spec.threads):  # lm-eval scores the weights with torch, as the run computed
            task = build_task(spec.task, trusted=trust)
            tokenizer = getattr(task.reference, "tokenizer", None)
            if tokenizer is None:
                raise ValueError(f"task {spec.task.name!r} has no transformers tokenizer to evaluate with lm-eval")
            model, weights = _weights(run_dir, task)
            if model is task.model:  # an inference-time method's: the reference weights, scored once per process
                key = store.config_hash(
                    {"task": spec.task.model_dump(), "tasks": list(tasks), "limit": limit, "batch_size": batch_size}
                )
                if key not in _REFERENCE_SCORES:
                    _REFERENCE_SCORES[key] = lm_eval_scores(model, tokenizer, list(tasks), limit, batch_size)
                scores = _REFERENCE_SCORES[key]
            else:
                scores = lm_eval_scores(model, tokenizer, list(tasks), limit, batch_size)
            entry["lm_eval"] = {"weights": weights, "lm_eval_version": version("lm-eval"), "results": scores}
    store.write_offtarget(run_dir, entry)
    return entry

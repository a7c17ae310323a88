"""The shared reference pool: M samples per prompt from pi_ref with proxy and gold rewards and reference
log-probabilities, computed once per (task config, M, seed, stream) and cached under the results store.

Every method and metric reuses it: best-of-n at any n <= M, the held-out samples that win rates are measured
against, reward CDFs, preference pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import seeding, store
from harness.policy import Completions, Prompt
from harness.progress import progress
from harness.store import config_hash, staged, write_json, write_jsonl
from harness.task import Task

log = logging.getLogger(__name__)

# Pools of different streams never share samples.
STREAMS = {"pool": seeding.POOL, "held-out": seeding.HELD_OUT, "train": seeding.TRAIN_POOL}
LABELS = {"pool": "reference pool", "held-out": "held-out reference samples", "train": "training pool"}


@dataclass
class Pool:
    """Samples per prompt, row i for `prompts[i]`: their completions, proxy rewards and gold rewards (if any)."""

    prompts: list[Prompt]
    completions: Completions  # token_logprobs and ref_token_logprobs are both pi_ref's
    rewards: list[np.ndarray]
    gold: list[np.ndarray] | None
    _rows: dict[tuple[int, ...], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rows = {p.tokens: i for i, p in enumerate(self.prompts)}

    @property
    def m(self) -> int:
        return len(self.rewards[0])

    def __contains__(self, prompt: Prompt) -> bool:
        return prompt.tokens in self._rows

    def index(self, prompt: Prompt) -> int:
        """The row of `prompt`'s samples (a prompt is known by its tokens)."""
        try:
            return self._rows[prompt.tokens]
        except KeyError:
            raise KeyError(f"prompt {prompt.id!r} has no samples in this pool") from None


class PoolCache:
    """Reference pools kept under `<root>/.pools/<task>/<hash>/`; a second use samples nothing. `threads` is
    torch's thread count while pools are sampled (harness.threads): part of a pool's key where it is not 1."""

    def __init__(self, root: Path, threads: int = 1):
        self.root = root
        self.threads = threads
        self.sampled = 0  # completions sampled by this cache (0 when every pool came from disk)

    def path(self, task: Task, m: int, seed: int, stream: str) -> Path:
        # the task's settings, not where its code lives (the builder), and the prompts as built
        config = task.config.model_dump(exclude={"methods", "evaluation", "builder"})
        if config["params"].get("backend") == "auto":
            # the pool is that of the backend `auto` chose: the same samples as a config naming it
            config["params"]["backend"] = getattr(task.reference, "backend", "auto")
        key = {
            "task": config,
            # the prompts as built, not only the config behind them
            "prompts": [p.tokens for p in _prompts(task, stream)],
            "m": m,
            "seed": seed,
            "stream": stream,
        } | ({"threads": self.threads} if self.threads != 1 else {})
        return store.pool_dir(self.root, task.config.name, config_hash(key))

    def get(self, task: Task, m: int, seed: int, stream: str = "pool") -> Pool:
        """The pool of `m` samples per prompt; stream "train" covers the training prompts, the others the
        evaluation prompts."""
        if stream not in STREAMS:
            raise ValueError(f"unknown pool stream {stream!r}; accepted: {', '.join(STREAMS)}")
        prompts = _prompts(task, stream)
        path = self.path(task, m, seed, stream)
        if (path / store.POOL_SAMPLES).is_file():
            log.info("reusing the reference pool %s", path)
            return _load(path, prompts, m)
        log.info("sampling a reference pool of %d per prompt for %d prompts", m, len(prompts))
        what = f"{LABELS[stream]} ({m} per prompt, {len(prompts)} prompts)"
        gold = None
        with progress(f"{what}: sampling", 2 + (task.gold_reward is not None)) as bar:
            c = task.reference.sample(prompts, m, seeding.derive_seed(seed, STREAMS[stream]))
            if c.ref_token_logprobs is None:
                c.ref_token_logprobs = c.token_logprobs
            bar.update(bar.task_ids[0], advance=1, description=f"{what}: proxy reward")
            rewards = task.reward.score(prompts, c)
            if task.gold_reward is not None:
                bar.update(bar.task_ids[0], advance=1, description=f"{what}: gold reward")
                gold = task.gold_reward.score(prompts, c)
            bar.advance(bar.task_ids[0])
        pool = Pool(prompts=prompts, completions=c, rewards=rewards, gold=gold)
        self.sampled += len(prompts) * m
        _save(pool, path, self.root, {"task": task.config.name, "m": m, "seed": seed, "stream": stream})
        return pool


def _prompts(task: Task, stream: str) -> list[Prompt]:
    return task.train_prompts if stream == "train" else task.prompts


def _save(pool: Pool, path: Path, root: Path, meta: dict) -> None:
    c = pool.completions
    records = (
        {
            "prompt_id": prompt.id,
            "tokens": list(c.tokens[i][j]),
            "text": c.text[i][j],
            "token_logprobs": c.ref_token_logprobs[i][j].tolist(),  # type: ignore[index]
            "reward": float(pool.rewards[i][j]),
            "gold_reward": None if pool.gold is None else float(pool.gold[i][j]),
        }
        for i, prompt in enumerate(pool.prompts)
        for j in range(pool.m)
    )
    with staged(path, root) as stage:
        write_jsonl(stage / store.POOL_SAMPLES, records)
        write_json(stage / store.POOL_META, meta)
        store.seal(stage)


def _load(path: Path, prompts: list[Prompt], m: int) -> Pool:
    remedy = "remove it with `harness gc`, and it is sampled again on next use"
    store.verify(path, store.POOL_SAMPLES, store.POOL_META, remedy=remedy)
    rows = store.read_jsonl(path / store.POOL_SAMPLES)
    meta = store.read_json(path / store.POOL_META)
    if not isinstance(meta, dict) or meta.get("m") != m or len(rows) != len(prompts) * m:
        raise store.CorruptError(f"reference pool {path} does not hold {len(prompts)} x {m} samples; {remedy}")
    try:
        by = [rows[i * m : (i + 1) * m] for i in range(len(prompts))]
        lps = [[np.asarray(x["token_logprobs"], np.float64) for x in row] for row in by]
        return Pool(
            prompts=prompts,
            completions=Completions(
                tokens=[[tuple(x["tokens"]) for x in row] for row in by],
                text=[[x["text"] for x in row] for row in by],
                token_logprobs=lps,
                ref_token_logprobs=lps,
            ),
            rewards=[np.array([x["reward"] for x in row]) for row in by],
            gold=None if by[0][0]["gold_reward"] is None else [np.array([x["gold_reward"] for x in row]) for row in by],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise store.CorruptError(f"reference pool {path} has a malformed record ({e!r}); {remedy}") from None

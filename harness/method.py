"""Method adapters: a pydantic config and `align(ctx) -> AlignedPolicy`, registered by name."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import model_validator

from harness.policy import Completions, Prompt
from harness.pool import Pool, PoolCache
from harness.registry import Registry, package_modules
from harness.task import StrictModel, Task

log = logging.getLogger(__name__)


MAX_N = 4096  # samples per output of a best-of-n-type method
# A coefficient or inverse temperature that multiplies a log-probability or a reward inside the loss (a KL
# coefficient, DPO's beta): beyond it the products overflow float32 and training ends in a NaN loss.
MAX_COEF = 1e4
MAX_STEPS = 1_000_000  # training steps, and passes or groups per step

# Method settings renamed since runs were first stored: old name -> (new name, what it is). A config given today
# (-p, a sweep file, a task's methods: block) that uses an old name is refused with a hint naming the new one; a
# config.json stored before the rename is read under the new name (harness.identity.current), never a user's.
RENAMED = {
    "pool_size": ("train_pool_size", "the training pool; --pool-size sets the evaluation pool"),
}


class MethodConfig(StrictModel):
    """Base of every method's hyperparameters: each field has a default, a range and a one-line help.

    A field that cannot change a run's results (how often to log or checkpoint) is marked operational with
    `Field(..., json_schema_extra=OPERATIONAL)`: it is stored with the run but is not part of its identity."""

    @model_validator(mode="before")
    @classmethod
    def _not_renamed(cls, data: Any) -> Any:
        """Refuse a setting under the name it had before it was renamed (RENAMED), with the new name."""
        if isinstance(data, dict):
            for old, (new, what) in RENAMED.items():
                if old in data and new in cls.model_fields and old not in cls.model_fields:
                    raise ValueError(f"{old} = {data[old]!r}: {old} is now {new} ({what}): give {new} instead")
        return data

    @classmethod
    def marked(cls, key: str) -> set[str]:
        """Names of the fields marked with `key` ("operational": OPERATIONAL, "checksum": CHECKSUM)."""
        return {
            name
            for name, field in cls.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(key)
        }

    def operational(self) -> set[str]:
        """Names of the fields marked operational."""
        return self.marked("operational")

    def check_task(self, task: Task) -> None:
        """Reject settings that the built task cannot take (a LoRA rank above its model's layer widths, an exact
        CDF on a task that does not enumerate), with a `ConfigError` that names the field: called once the task is
        built and before any sampling or training. Accepts everything by default."""


OPERATIONAL: dict[str, Any] = {"operational": True}
# A field that is part of a run's identity but does not name its row on a board (the `setting` column): a checksum
# of what the method reads (a checkpoint's files), which the row's label stands for.
CHECKSUM: dict[str, Any] = {"checksum": True}


@dataclass(frozen=True)
class TrainingCost:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class RunContext:
    """What a method gets to work with: the task (reference policy, proxy reward), a seed, a directory."""

    task: Task
    seed: int
    out_dir: Path  # the run's (staging) directory: what is written here lands in the store with the run
    pools: PoolCache
    checkpoint_dir: Path | None = None  # kept across interruptions until the run completes; None: no checkpoints

    def evaluation_pool(self, n: int) -> Pool | None:
        """The shared reference pool of the task's evaluation prompts (M = evaluation.pool_size samples per
        prompt) for a policy that picks each output from n reference samples: None where n > M, and the policy
        samples its candidates afresh. The one place that decides whether an inference-time method reads the
        pool."""
        size = self.task.config.evaluation.pool_size
        return self.pools.get(self.task, size, self.seed) if n <= size else None

    def held_out(self) -> Pool:
        """The held-out reference samples of the evaluation prompts (evaluation.reference_samples per prompt), which
        win rates are measured against: independent of the shared pool."""
        return self.pools.get(self.task, self.task.config.evaluation.reference_samples, self.seed, stream="held-out")


@dataclass
class Outputs:
    """The outputs that a policy's metrics average over, per prompt, with their weights in that average."""

    completions: Completions
    rewards: list[np.ndarray]
    gold: list[np.ndarray] | None
    weights: list[np.ndarray]
    # Outputs picked from candidates of the shared pool: per prompt, the pool indices of each output's candidates,
    # shape (outputs, n). Outputs whose candidates are disjoint are independent; pool samples outside an output's
    # candidates are independent of it.
    candidates: list[np.ndarray] | None = None

    @classmethod
    def from_pool(
        cls,
        pool: Pool,
        indices: list[np.ndarray],
        weights: list[np.ndarray],
        candidates: list[np.ndarray] | None = None,
    ) -> Outputs:
        """The pool samples `indices[i]` of each prompt i, with their pool rewards and the given weights; their
        log-probabilities are pi_ref's, kept as `ref_token_logprobs` and not the policy's."""
        completions = pool.completions.take(indices)
        completions.token_logprobs = None
        return cls(
            completions=completions,
            rewards=[r[i] for r, i in zip(pool.rewards, indices, strict=True)],
            gold=None if pool.gold is None else [g[i] for g, i in zip(pool.gold, indices, strict=True)],
            weights=weights,
            candidates=candidates,
        )


class AlignedPolicy(ABC):
    """The result of a method: a policy to generate from, with its inference and training cost.

    The evaluator (harness.evaluate) samples `generate` and scores the outputs; a policy that can be evaluated
    better says so through the three hooks below, which do nothing by default."""

    samples_per_output: int = 1
    training: TrainingCost = TrainingCost()  # what it took to produce the policy; none for inference-only
    outputs_only: bool = False  # outputs without a model (a file of them): no weights for `harness offtarget`

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        """`count` outputs per prompt; the same seed, the same outputs."""

    def sequence_logprobs(
        self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]
    ) -> list[np.ndarray] | None:
        """Sequence log-probabilities log pi(y | x), one number per completion (a reference Policy's
        `token_logprobs` gives them per token), where this policy has them: the Monte Carlo and exact KL read
        them (docs/adding-a-method.md)."""
        return None

    def pooled(self, seed: int, count: int) -> Outputs | None:
        """Outputs taken from the shared reference pool of the evaluation prompts, weighted so that every metric is
        this policy's exactly in expectation: best-of-n's whole pool with its weights (harness.bon.pool_weights),
        or `count` outputs per prompt picked from pooled candidates (harness.selection); None: the evaluator
        samples `count` outputs afresh."""
        return None

    def kl_terms(self, outputs: Outputs, ref_logprobs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Per-output terms of KL estimators that hold for this policy alone (best-of-n's, soft best-of-n's), from
        the outputs and their sequence log-probabilities under pi_ref; none by default."""
        return {}

    def curve(self) -> list[tuple[int, AlignedPolicy]]:
        """Policies of this one's family evaluated from its pooled outputs beside it, by their n (best-of-n at
        n = 1..M: the best-of-n curve of results.json); none by default."""
        return []


C = TypeVar("C", bound=MethodConfig)


class Method(ABC, Generic[C]):
    """A method adapter. Subclasses set `Config` and implement `align`.

    `version` is part of every run's identity (from 2 on; version 1 is left out of the hash): raise it by one in
    the same change as anything that moves the method's numbers, so that a store never reuses a run computed by
    the older code (tests/test_golden.py fails until it is raised; docs/reproducibility.md)."""

    Config: ClassVar[type[MethodConfig]]
    version: ClassVar[int] = 1

    def __init__(self, config: C):
        self.config = config

    @abstractmethod
    def align(self, ctx: RunContext) -> AlignedPolicy: ...


def _builtin_methods() -> list[tuple[str, str]]:
    return [(stem, f"harness.methods.{stem}") for stem, _ in package_modules("harness.methods")]


METHODS: Registry[type[Method]] = Registry("method", "harness.methods", _builtin_methods)

"""What a task's reference policy and rewards offer the engine, and the completions they exchange."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    tokens: tuple[int, ...]


@dataclass
class Completions:
    """Completions grouped by prompt: tokens[i][k] is completion k of prompt i.

    token_logprobs are per-token log-probabilities under the policy that produced the completions (None
    for policies without per-token probabilities, such as best-of-n); ref_token_logprobs are those under
    the reference policy, filled in only by code that knows the sampler was pi_ref (the pool, best-of-n), so
    that nobody scores twice. A Policy's `sample` never fills them: it does not know whether it is the
    reference.
    """

    tokens: list[list[tuple[int, ...]]]
    text: list[list[str]]
    token_logprobs: list[list[np.ndarray]] | None = None
    ref_token_logprobs: list[list[np.ndarray]] | None = None

    def take(self, index: Sequence[np.ndarray]) -> Completions:
        """The completions index[i] of each prompt i, in that order."""

        def pick(rows: list[list], ix: Sequence[np.ndarray]) -> list[list]:
            return [[row[j] for j in idx] for row, idx in zip(rows, ix, strict=True)]

        return Completions(
            tokens=pick(self.tokens, index),
            text=pick(self.text, index),
            token_logprobs=None if self.token_logprobs is None else pick(self.token_logprobs, index),
            ref_token_logprobs=None if self.ref_token_logprobs is None else pick(self.ref_token_logprobs, index),
        )


def sequence_logprobs(token_logprobs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Sum per-token log-probabilities into one sequence log-probability per completion."""
    return [np.array([float(np.sum(t)) for t in row]) for row in token_logprobs]


@runtime_checkable
class Policy(Protocol):
    """A sampler and scorer of completions (the `hf` and `vllm` backends; a toy model on the toy task)."""

    def sample(self, prompts: Sequence[Prompt], n: int, seed: int) -> Completions:
        """n completions per prompt with their per-token log-probabilities; the same seed, the same samples."""
        ...

    def token_logprobs(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[list[np.ndarray]]:
        """Per-token log-probabilities of given completions: for prompt i, one array per completion (an aligned
        policy's `sequence_logprobs` gives one number per completion instead)."""
        ...


@runtime_checkable
class EnumerablePolicy(Policy, Protocol):
    """A policy whose every completion can be listed, so that every metric can be computed exactly."""

    def support(self, prompt: Prompt) -> Completions:
        """All completions of one prompt (a single row), with per-token log-probabilities."""
        ...


@runtime_checkable
class Reward(Protocol):
    """A scorer of completions; `label` names what it reads (a class, a lexicon, a formula)."""

    label: str

    def score(self, prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]: ...


@dataclass
class Enumeration:
    """Every completion of one prompt with its reference probability and reward."""

    support: Completions  # a single row
    p_ref: np.ndarray
    rewards: np.ndarray

    def index(self, tokens: Sequence[tuple[int, ...]]) -> np.ndarray:
        """Positions of the given completions in the support."""
        where = {c: j for j, c in enumerate(self.support.tokens[0])}
        return np.array([where[tuple(c)] for c in tokens], dtype=int)


def enumerate_prompt(reference: EnumerablePolicy, reward: Reward, prompt: Prompt) -> Enumeration:
    support = reference.support(prompt)
    p_ref = np.exp(sequence_logprobs(support.token_logprobs)[0])  # type: ignore[arg-type]
    return Enumeration(support=support, p_ref=p_ref, rewards=reward.score([prompt], support)[0])

"""Inference-time policies that draw n samples of the reference policy and return one of them, chosen by a rule
on their rewards and reference log-probabilities (best-of-n, soft best-of-n, regularized best-of-n). A method
adapter supplies the rule and its exact output distribution."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from harness import kl
from harness.bon import argmax_random_ties
from harness.method import AlignedPolicy, Outputs
from harness.policy import Completions, EnumerablePolicy, Policy, Prompt, Reward, enumerate_prompt, sequence_logprobs
from harness.pool import Pool


class SelectionPolicy(AlignedPolicy):
    """n candidates per output from pi_ref, one returned by `choose`; exact log-probabilities from `distribution`
    where the reference policy can be enumerated.

    Given the shared reference pool of the prompts (n <= M), the candidates of each output are a random n-subset
    of the prompt's pool: n distinct i.i.d. draws from pi_ref like fresh samples, so every estimate over the
    outputs stays unbiased, at no extra sampling. Without it they are sampled afresh.
    """

    def __init__(
        self, reference: Policy, reward: Reward, n: int, pool: Pool | None = None, prompts: Sequence[Prompt] = ()
    ):
        self.reference, self.reward = reference, reward
        self.n = self.samples_per_output = n
        self.candidates = pool if pool is not None and n <= pool.m else None
        self.row = {p.tokens: i for i, p in enumerate(prompts)}
        self._log_dist: dict[tuple[int, ...], np.ndarray] = {}

    @abstractmethod
    def choose(self, rewards: np.ndarray, ref_logprobs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Index of the returned candidate in each row of n (arrays of shape (count, n))."""

    @abstractmethod
    def distribution(self, p_ref: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """The exact output distribution over an enumerated support."""

    def _draw(self, prompts: Sequence[Prompt], count: int, seed: int) -> tuple[Completions, list[np.ndarray]]:
        """count * n candidates per prompt, with their reference log-probabilities and rewards."""
        pool = self.candidates
        if pool is not None and all(p.tokens in self.row for p in prompts):
            rng = np.random.default_rng([seed, 2])
            rows = [self.row[p.tokens] for p in prompts]
            index = [np.concatenate([rng.choice(pool.m, self.n, replace=False) for _ in range(count)]) for _ in rows]
            sub = Pool(
                completions=Completions(
                    tokens=[pool.completions.tokens[i] for i in rows],
                    text=[pool.completions.text[i] for i in rows],
                    ref_token_logprobs=[pool.completions.ref_token_logprobs[i] for i in rows],  # type: ignore[index]
                ),
                rewards=[pool.rewards[i] for i in rows],
                gold=None,
            )
            return sub.completions.take(index), [r[ix] for r, ix in zip(sub.rewards, index, strict=True)]
        candidates = self.reference.sample(prompts, count * self.n, seed)
        candidates.ref_token_logprobs = candidates.token_logprobs  # sampled from pi_ref itself
        candidates.token_logprobs = None
        return candidates, self.reward.score(prompts, candidates)

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        candidates, rewards = self._draw(prompts, count, seed)
        ref = sequence_logprobs(candidates.ref_token_logprobs)  # type: ignore[arg-type]
        rng = np.random.default_rng([seed, 1])  # the choice, independent of the sampling stream
        offsets = np.arange(count) * self.n
        chosen = candidates.take(
            [
                offsets + self.choose(r.reshape(count, self.n), lp.reshape(count, self.n), rng)
                for r, lp in zip(rewards, ref, strict=True)
            ]
        )
        chosen.token_logprobs = None  # the policy has no per-token probabilities
        return chosen

    def logprob(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[np.ndarray] | None:
        """Exact log pi(y) where the reference policy can be enumerated; unavailable otherwise."""
        if not isinstance(self.reference, EnumerablePolicy):
            return None
        out = []
        for prompt, row in zip(prompts, tokens, strict=True):
            e = enumerate_prompt(self.reference, self.reward, prompt)
            if prompt.tokens not in self._log_dist:
                with np.errstate(divide="ignore"):
                    self._log_dist[prompt.tokens] = np.log(self.distribution(e.p_ref, e.rewards))
            out.append(self._log_dist[prompt.tokens][e.index(row)])
        return out


class BestOfScorePolicy(SelectionPolicy):
    """Returns the candidate of highest `score` (ties uniformly at random): best-of-n of that score. The KL of
    best-of-n depends only on n and pi_ref when the score has no ties, whatever the score, so the best-of-n
    bound log n - (n-1)/n and Beirami et al.'s (2024) estimate apply (docs/formulas.md)."""

    def score(self, rewards: np.ndarray, ref_logprobs: np.ndarray) -> np.ndarray:
        """The score the best candidate maximises; the proxy reward by default (best-of-n)."""
        return rewards

    def choose(self, rewards: np.ndarray, ref_logprobs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return argmax_random_ties(self.score(rewards, ref_logprobs), rng)

    def kl_terms(self, outputs: Outputs, ref_logprobs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        return {
            "kl_bon_bound": [np.full(len(s), kl.kl_bon_bound(self.n)) for s in ref_logprobs],
            "kl_bon_beirami": [kl.kl_bon_beirami_terms(s, self.n) for s in ref_logprobs],
        }

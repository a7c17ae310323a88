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
from harness.seeding import CANDIDATES, OUTPUTS, PICK, derive_seed


def subsets_in_rounds(m: int, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Pool indices of the n candidates of each of `count` outputs, shape (count, n), drawn in rounds: a round cuts
    a random permutation of the m pooled samples into m // n disjoint n-subsets, one per output.

    Each row is a uniformly random n-subset of the pool, so n i.i.d. draws from pi_ref when the pool is; the rows
    of one round are disjoint, so the outputs picked from them are independent draws of the policy."""
    if not 1 <= n <= m:
        raise ValueError(f"n must lie in [1, m={m}], got {n}")
    per_round = m // n
    rounds = [rng.permutation(m)[: per_round * n].reshape(per_round, n) for _ in range(-(-count // per_round))]
    return np.concatenate(rounds)[:count]


def rewards_apart(candidates: np.ndarray, pool_rewards: np.ndarray, held_out_rewards: np.ndarray) -> np.ndarray:
    """For each output (a row of pool indices of its candidates), the rewards of the reference samples independent
    of it: the held-out samples and the pooled samples outside its own candidates, shape (outputs, R + M - n).

    The candidates are a random n-subset of M i.i.d. pooled draws, so the other M - n draws are i.i.d. pi_ref and
    independent of them, and so of the output picked from them."""
    outside = np.ones((len(candidates), len(pool_rewards)), bool)
    outside[np.arange(len(candidates))[:, None], candidates] = False
    rest = np.broadcast_to(pool_rewards, outside.shape)[outside].reshape(len(candidates), -1)
    held_out = np.broadcast_to(held_out_rewards, (len(candidates), len(held_out_rewards)))
    return np.concatenate([held_out, rest], axis=1)


class SelectionPolicy(AlignedPolicy):
    """n candidates per output from pi_ref, one returned by `choose`; exact log-probabilities from `distribution`
    where the reference policy can be enumerated.

    Given the shared reference pool of the evaluation prompts (n <= M: harness.method.RunContext.evaluation_pool),
    the candidates of the outputs are n-subsets of the
    prompt's pool drawn in rounds (`subsets_in_rounds`): every output is an exact draw of the policy, at no extra
    sampling, and the M // n outputs of one round, whose candidates are disjoint, are independent; outputs of
    different rounds may share a candidate. `pooled` returns the outputs with their candidates, so that what needs
    independent outputs (distinct-n: harness.offtarget) or reference samples independent of an output (soft
    best-of-n's `kl_pool`) can tell. Without the pool, candidates are sampled afresh.
    """

    def __init__(self, reference: Policy, reward: Reward, n: int, pool: Pool | None = None):
        self.reference, self.reward = reference, reward
        self.n = self.samples_per_output = n
        self.candidates = pool
        self._log_dist: dict[tuple[int, ...], np.ndarray] = {}

    @abstractmethod
    def choose(self, rewards: np.ndarray, ref_logprobs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Index of the returned candidate in each row of n (arrays of shape (count, n))."""

    @abstractmethod
    def distribution(self, p_ref: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """The exact output distribution over an enumerated support."""

    def _pick(self, pool: Pool, rows: list[int], count: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """For each pool row: the candidates of `count` outputs (pool indices, shape (count, n)) and the pool index
        of the output picked from each."""
        draw = np.random.default_rng([seed, CANDIDATES])
        candidates = [subsets_in_rounds(pool.m, self.n, count, draw) for _ in rows]
        ref = sequence_logprobs(pool.completions.ref_token_logprobs)  # type: ignore[arg-type]
        pick = np.random.default_rng([seed, PICK])  # the choice, independent of the candidates
        chosen = [
            c[np.arange(count), self.choose(pool.rewards[i][c], ref[i][c], pick)]
            for i, c in zip(rows, candidates, strict=True)
        ]
        return candidates, chosen

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        pool = self.candidates
        if pool is not None and all(p in pool for p in prompts):
            rows = [pool.index(p) for p in prompts]
            _, picked = self._pick(pool, rows, count, seed)
            sub = Completions(
                tokens=[pool.completions.tokens[i] for i in rows],
                text=[pool.completions.text[i] for i in rows],
                ref_token_logprobs=[pool.completions.ref_token_logprobs[i] for i in rows],  # type: ignore[index]
            )
            return sub.take(picked)
        candidates = self.reference.sample(prompts, count * self.n, seed)
        rewards = self.reward.score(prompts, candidates)
        ref = sequence_logprobs(candidates.token_logprobs)  # type: ignore[arg-type]  # sampled from pi_ref itself
        rng = np.random.default_rng([seed, PICK])
        offsets = np.arange(count) * self.n
        chosen = candidates.take(
            [
                offsets + self.choose(r.reshape(count, self.n), lp.reshape(count, self.n), rng)
                for r, lp in zip(rewards, ref, strict=True)
            ]
        )
        chosen.ref_token_logprobs, chosen.token_logprobs = chosen.token_logprobs, None  # pi_ref's, not the policy's
        return chosen

    def pooled(self, seed: int, count: int) -> Outputs | None:
        """`count` outputs per evaluation prompt picked from its pool as `generate` picks them, with their pool
        rewards and the pool indices of their candidates; None without the pool."""
        pool = self.candidates
        if pool is None:
            return None
        candidates, chosen = self._pick(pool, list(range(len(pool.rewards))), count, derive_seed(seed, OUTPUTS))
        return Outputs.from_pool(pool, chosen, [np.full(count, 1.0 / count)] * len(chosen), candidates)

    def sequence_logprobs(
        self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]
    ) -> list[np.ndarray] | None:
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
    """Returns the candidate of highest `score` (ties uniformly at random): best-of-n of that score.

    Its KL is at most log n - (n-1)/n, whatever the score (Beirami et al. 2024): the bound is reached only in the
    limit where no single score level carries probability mass under pi_ref (every output's pi_ref(y) -> 0, no
    ties); where outputs carry mass the KL lies below it and depends on which outputs the score favours. Beirami
    et al.'s estimate reads each output's pi_ref(y) and accounts for that mass (docs/formulas.md)."""

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

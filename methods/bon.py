"""Best-of-n sampling: draw n completions from the reference policy, return the one with the highest proxy reward.

Ties are broken uniformly at random, so on an enumerable task the output distribution is exactly
pi_n(y) = pi_ref(y) / pi_ref([y]) * (F<=(y)^n - F<(y)^n) (harness.bon.bon_distribution).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from harness.bon import argmax_random_ties, bon_distribution
from harness.method import MAX_N, METHODS, AlignedPolicy, Method, MethodConfig, RunContext
from harness.policy import Completions, EnumerablePolicy, Policy, Prompt, Reward, enumerate_prompt
from harness.pool import Pool


class BoNConfig(MethodConfig):
    n: int = Field(4, ge=1, le=MAX_N, description="Samples drawn from the reference policy per output.")


class BoNPolicy(AlignedPolicy):
    def __init__(self, reference: Policy, reward: Reward, n: int, pool: Pool | None = None):
        self.reference = reference
        self.reward = reward
        self.n = self.bon_n = self.samples_per_output = n
        self.pool = pool

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        candidates = self.reference.sample(prompts, count * self.n, seed)
        candidates.ref_token_logprobs = candidates.token_logprobs  # sampled from pi_ref itself
        rng = np.random.default_rng([seed, 1])  # tie breaking, independent of the sampling stream
        offsets = np.arange(count) * self.n
        rewards = self.reward.score(prompts, candidates)
        chosen = candidates.take([offsets + argmax_random_ties(r.reshape(count, self.n), rng) for r in rewards])
        chosen.token_logprobs = None  # best-of-n has no per-token probabilities
        return chosen

    def logprob(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[np.ndarray] | None:
        """Exact log pi_n(y) where the reference policy can be enumerated; unavailable otherwise."""
        if not isinstance(self.reference, EnumerablePolicy):
            return None
        out = []
        for prompt, row in zip(prompts, tokens, strict=True):
            e = enumerate_prompt(self.reference, self.reward, prompt)
            with np.errstate(divide="ignore"):
                out.append(np.log(bon_distribution(e.p_ref, e.rewards, self.n)[e.index(row)]))
        return out


@METHODS.register("bon")
class BoN(Method[BoNConfig]):
    """Best-of-n sampling (inference-time alignment; n samples per output, no training)."""

    Config = BoNConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        # With n <= M, the shared reference pool evaluates best-of-n exactly in expectation and at no extra
        # sampling cost (harness.bon.pool_weights); beyond it, outputs are sampled afresh.
        fits = self.config.n <= ctx.task.config.evaluation.pool_size
        return BoNPolicy(ctx.task.reference, ctx.task.reward, self.config.n, ctx.pool() if fits else None)

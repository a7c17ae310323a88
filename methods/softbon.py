"""Soft best-of-n (Verdun et al. 2025): draw n completions from the reference policy and return y_i with
probability proportional to exp(r(y_i) / lambda).

lambda -> 0 is best-of-n (ties broken uniformly at random), lambda -> inf is the reference policy. On an
enumerable task the output distribution is exact (harness.bon.softbon_distribution), so its KL and win rate are.
Elsewhere, with n <= M, its candidates come from the shared reference pool (harness.selection) and its KL is
`kl_pool`: the mean over its outputs of log pi(y)/pi_ref(y), which depends on y only through r(y) and is
computed from a reward law (harness.bon.softbon_log_ratio). That law is, for each output, the empirical law of
the reference samples independent of it: the held-out samples and the pooled samples outside its own candidates
(harness.selection.rewards_apart), R + M - n in all. A law that held the output's own candidates would bias the
KL upward, by more as n grows (docs/formulas.md).
"""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field

from harness.bon import softbon_distribution, softbon_log_ratio, softmax_choice
from harness.method import MAX_N, METHODS, AlignedPolicy, Method, MethodConfig, Outputs, RunContext
from harness.policy import Policy, Reward
from harness.pool import Pool
from harness.selection import SelectionPolicy, rewards_apart

# The exact distribution and kl_pool integrate on a grid whose length grows as (reward range) / lambda
# (harness.bon._log_integral): 0.01 keeps a toy run under a minute; best-of-n is the lambda -> 0 limit.
MIN_LAMBDA = 0.01


class SoftBoNConfig(MethodConfig):
    # `lambda` is a Python keyword: the field is `lam`, read and written as `lambda` (`-p lambda=0.5`)
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    n: int = Field(4, ge=1, le=MAX_N, description="Samples drawn from the reference policy per output.")
    lam: float = Field(
        1.0,
        ge=MIN_LAMBDA,
        alias="lambda",
        description="Temperature lambda of the pick: probabilities softmax(r / lambda).",
    )


class SoftBoNPolicy(SelectionPolicy):
    def __init__(
        self,
        lam: float,
        reference: Policy,
        reward: Reward,
        n: int,
        pool: Pool | None = None,
        held_out: Pool | None = None,
    ):
        super().__init__(reference, reward, n, pool)
        self.lam = lam
        self.held_out = held_out  # the evaluation prompts' held-out reference samples: the KL's reward law

    def choose(self, rewards: np.ndarray, ref_logprobs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return softmax_choice(rewards, self.lam, rng)

    def distribution(self, p_ref: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return softbon_distribution(p_ref, rewards, self.n, self.lam)

    def kl_terms(self, outputs: Outputs, ref_logprobs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        pool, held_out = self.candidates, self.held_out  # the pools of the evaluation prompts, row for row
        if pool is None or held_out is None or outputs.candidates is None:
            return {}
        laws = [
            rewards_apart(c, r, h) for c, r, h in zip(outputs.candidates, pool.rewards, held_out.rewards, strict=True)
        ]
        return {
            "kl_pool": [
                softbon_log_ratio(r, law, self.n, self.lam) for r, law in zip(outputs.rewards, laws, strict=True)
            ]
        }


@METHODS.register("softbon")
class SoftBoN(Method[SoftBoNConfig]):
    """Soft best-of-n sampling (inference-time; n samples per output, no training)."""

    Config = SoftBoNConfig
    version = 2  # candidates drawn in rounds of disjoint subsets of the pool; kl_pool from independent rewards

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        pool = ctx.evaluation_pool(cfg.n)
        held_out = ctx.held_out() if pool is not None else None
        return SoftBoNPolicy(cfg.lam, task.reference, task.reward, cfg.n, pool, held_out)

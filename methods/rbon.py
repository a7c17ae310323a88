"""Regularized best-of-n (Jinnai et al. 2024), in its KL-regularized form: draw n completions from the reference
policy and return the argmax of r(y) + beta log pi_ref(y) (ties broken uniformly at random).

beta = 0 is best-of-n; a larger beta favours the reference policy's likelier completions, which damps reward
hacking. The output distribution is best-of-n of that score, exact on an enumerable task
(harness.bon.rbon_distribution); elsewhere the best-of-n KL bound log n - (n-1)/n, an upper bound for best-of-n
of any score, and Beirami et al.'s estimate are reported. The bound is the KL only where no output carries mass
under pi_ref (long sequences); where outputs do, favouring likely ones (a larger beta) lowers the KL below it
(docs/formulas.md). Like soft best-of-n, its candidates come from the shared pool when n <= M
(harness.selection).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from harness.bon import rbon_distribution, rbon_scores
from harness.method import MAX_COEF, MAX_N, METHODS, AlignedPolicy, Method, MethodConfig, RunContext
from harness.policy import Policy, Reward
from harness.pool import Pool
from harness.selection import BestOfScorePolicy


class RBoNConfig(MethodConfig):
    n: int = Field(4, ge=1, le=MAX_N, description="Samples drawn from the reference policy per output.")
    beta: float = Field(
        0.1, ge=0, le=MAX_COEF, description="Weight beta of log pi_ref(y) in the score r(y) + beta log pi_ref(y)."
    )


class RBoNPolicy(BestOfScorePolicy):
    def __init__(self, beta: float, reference: Policy, reward: Reward, n: int, pool: Pool | None = None):
        super().__init__(reference, reward, n, pool)
        self.beta = beta

    def score(self, rewards: np.ndarray, ref_logprobs: np.ndarray) -> np.ndarray:
        return rbon_scores(rewards, ref_logprobs, self.beta)

    def distribution(self, p_ref: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return rbon_distribution(p_ref, rewards, self.n, self.beta)


@METHODS.register("rbon")
class RBoN(Method[RBoNConfig]):
    """Regularized best-of-n sampling (inference-time; n samples per output, no training)."""

    Config = RBoNConfig
    version = 2  # candidates drawn in rounds of disjoint subsets of the pool

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        return RBoNPolicy(cfg.beta, task.reference, task.reward, cfg.n, ctx.evaluation_pool(cfg.n))

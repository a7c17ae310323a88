"""Best-of-n sampling: draw n completions from the reference policy, return the one with the highest proxy reward.

Ties are broken uniformly at random, so on an enumerable task the output distribution is exactly
pi_n(y) = pi_ref(y) / pi_ref([y]) * (F<=(y)^n - F<(y)^n) (harness.bon.bon_distribution).

With n <= M, the shared reference pool of M samples per evaluation prompt evaluates best-of-n exactly in
expectation at no extra sampling (harness.bon.pool_weights), and with it best-of-n at every n' = 1..M: the
best-of-n curve. Beyond the pool, outputs are sampled afresh.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from harness import bon, seeding
from harness.method import MAX_N, METHODS, AlignedPolicy, Method, MethodConfig, Outputs, RunContext
from harness.selection import BestOfScorePolicy


class BoNConfig(MethodConfig):
    n: int = Field(4, ge=1, le=MAX_N, description="Samples drawn from the reference policy per output.")


class BoNPolicy(BestOfScorePolicy):
    """Best-of-n of the proxy reward; evaluated from `pool` (the evaluation prompts' reference pool) where given."""

    def distribution(self, p_ref: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return bon.bon_distribution(p_ref, rewards, self.n)

    def pooled(self, seed: int, count: int) -> Outputs | None:
        if self.candidates is None:
            return None
        pool, rng = self.candidates, np.random.default_rng(seeding.derive_seed(seed, seeding.TIES))
        orders = [bon.pool_order(r, rng) for r in pool.rewards]
        return Outputs.from_pool(pool, orders, [bon.pool_weights(pool.m, self.n)] * len(orders))

    def curve(self) -> list[tuple[int, AlignedPolicy]]:
        pool = self.candidates
        return (
            [] if pool is None else [(k, BoNPolicy(self.reference, self.reward, k, pool)) for k in range(1, pool.m + 1)]
        )


@METHODS.register("bon")
class BoN(Method[BoNConfig]):
    """Best-of-n sampling (inference-time alignment; n samples per output, no training)."""

    Config = BoNConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        n = self.config.n
        return BoNPolicy(ctx.task.reference, ctx.task.reward, n, ctx.evaluation_pool(n))

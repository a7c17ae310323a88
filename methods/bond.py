"""BOND (Sessa et al. 2024): distil the best-of-n distribution by the Jeffreys divergence
J = (1-b) KL(pi_BoN || pi) + b KL(pi || pi_BoN).

Backward term: policy gradient (the shared PPO core) with reward log p<=(y), p<= estimated per training
prompt from the reference pool with add-one smoothing, and beta = 1/(n-1). Forward term: the negative
log-likelihood of best-of-n samples drawn from the same pool. The two losses are mixed with weights b and
1 - b; since PPO normalises its advantages, b sets the mix of the two gradient signals rather than the
exact Jeffreys weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from harness import objectives, seeding
from harness.bon import argmax_random_ties
from harness.method import METHODS, AlignedPolicy, Method, RunContext
from harness.policy import Completions, Prompt
from harness.train import PPOConfig, completion_forward, train_on_policy


class BONDConfig(PPOConfig):
    n: int = Field(8, ge=2, description="N of the best-of-n distribution to distil.")
    b: float = Field(0.5, ge=0, le=1, description="Jeffreys mix: weight of the backward KL (paper: 0.5).")
    pool_size: int = Field(64, ge=2, description="Reference samples per training prompt (for p<= and BoN samples).")


@METHODS.register("bond")
class BOND(Method[BONDConfig]):
    """Best-of-n distillation with the Jeffreys divergence."""

    Config = BONDConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg = self.config
        if cfg.n > cfg.pool_size:
            raise ValueError(f"n = {cfg.n} exceeds pool_size = {cfg.pool_size}; BoN samples come from the pool")
        task = ctx.task
        pool = ctx.pools.get(task, cfg.pool_size, ctx.seed, stream="train")
        row = {p.tokens: i for i, p in enumerate(task.train_prompts)}

        def reward(prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]:
            scores = task.reward.score(prompts, completions)
            return [
                np.log(objectives.pool_cdf(pool.rewards[row[p.tokens]], r, inclusive=True))
                for p, r in zip(prompts, scores, strict=True)
            ]

        def forward_kl(model, prompts, step):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seeding.derive_seed(ctx.seed, seeding.TRAIN, step, 1))
            rows, comps = [], []
            for p in prompts:
                i = row[p.tokens]
                for _ in range(cfg.samples_per_prompt):
                    group = rng.choice(cfg.pool_size, size=cfg.n, replace=False)
                    rows.append(p)
                    comps.append(pool.completions.tokens[i][group[argmax_random_ties(pool.rewards[i][group], rng)]])
            lp, _, mask = completion_forward(model, None, rows, comps)
            return -(lp.sum() / mask.sum())

        return train_on_policy(ctx, cfg, reward, 1.0 / (cfg.n - 1), extra_loss=forward_kl, pg_weight=cfg.b)

"""BOND (Sessa et al. 2024): distil the best-of-n distribution by the Jeffreys divergence
J = (1-b) KL(pi_BoN || pi) + b KL(pi || pi_BoN).

Backward term: policy gradient (the shared PPO core) with reward log p<=(y), p<= estimated per training
prompt from a pool of anchor samples with add-one smoothing, and beta = 1/(n-1). Forward term: the negative
log-likelihood of best-of-n samples drawn from the same pool. The two losses are mixed with weights b and
1 - b; since PPO normalises its advantages, b sets the mix of the two gradient signals rather than the
exact Jeffreys weight.

The anchor is pi_ref (whose pool is the shared training pool). Iterative BOND (section 4) splits training into
`iterations` equal phases: at the start of each later phase the anchor becomes the current policy, a fresh
pool is drawn from it, and the KL penalty is taken against it; distilling best-of-n of best-of-n ... aims at
best-of-n^iterations of pi_ref.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field, model_validator

from harness import objectives, seeding
from harness.bon import argmax_random_ties
from harness.method import MAX_N, MAX_STEPS, METHODS, AlignedPolicy, Method, RunContext
from harness.policy import Completions, Prompt
from harness.pool import Pool
from harness.task import MAX_SAMPLES
from harness.training.anchor import Anchor
from harness.training.config import PPOConfig
from harness.training.logprobs import nll
from harness.training.onpolicy import train_on_policy


class BONDConfig(PPOConfig):
    n: int = Field(8, ge=2, le=MAX_N, description="N of the best-of-n distribution to distil.")
    b: float = Field(0.5, ge=0, le=1, description="Jeffreys mix: weight of the backward KL (paper: 0.5).")
    train_pool_size: int = Field(
        64,
        ge=2,
        le=MAX_SAMPLES,
        description="Training pool: anchor samples per training prompt (for p<= and BoN samples).",
    )
    iterations: int = Field(
        1,
        ge=1,
        le=MAX_STEPS,
        description="Iterative BOND: phases after each of which the anchor becomes the current policy.",
    )

    @model_validator(mode="after")
    def _check(self) -> BONDConfig:
        if self.n > self.train_pool_size:
            raise ValueError(
                f"n = {self.n} exceeds train_pool_size = {self.train_pool_size}; BoN samples come from that pool"
            )
        if self.steps % self.iterations:
            raise ValueError(f"steps = {self.steps} must be a multiple of iterations = {self.iterations}")
        return self


@METHODS.register("bond")
class BOND(Method[BONDConfig]):
    """Best-of-n distillation with the Jeffreys divergence (iteratively, with iterations > 1)."""

    Config = BONDConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        phase = cfg.steps // cfg.iterations
        anchor = Anchor(every=phase) if cfg.iterations > 1 else None
        pools: dict[int, Pool] = {}

        def pool(step: int) -> Pool:
            """The anchor's pool for the phase of `step` (phase 0: pi_ref's shared training pool)."""
            k = step // phase
            if k not in pools:
                pools.clear()
                if k == 0:
                    pools[k] = ctx.pools.get(task, cfg.train_pool_size, ctx.seed, stream="train")
                else:
                    assert anchor is not None
                    seed = seeding.step_seed(ctx.seed, k, "anchor_pool")
                    c = anchor.policy(task).sample(task.train_prompts, cfg.train_pool_size, seed)
                    rewards = task.reward.score(task.train_prompts, c)
                    pools[k] = Pool(prompts=task.train_prompts, completions=c, rewards=rewards, gold=None)
            return pools[k]

        def reward(prompts: Sequence[Prompt], completions: Completions, step: int) -> list[np.ndarray]:
            scores, anchor_pool = task.reward.score(prompts, completions), pool(step)
            return [
                np.log(objectives.pool_cdf(anchor_pool.rewards[anchor_pool.index(p)], r, inclusive=True))
                for p, r in zip(prompts, scores, strict=True)
            ]

        def forward_kl(model, prompts, step):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seeding.step_seed(ctx.seed, step, "bond_forward"))
            anchor_pool, rows, comps = pool(step), [], []
            for p in prompts:
                i = anchor_pool.index(p)
                for _ in range(cfg.samples_per_prompt):
                    group = rng.choice(cfg.train_pool_size, size=cfg.n, replace=False)
                    best = group[argmax_random_ties(anchor_pool.rewards[i][group], rng)]
                    rows.append(p)
                    comps.append(anchor_pool.completions.tokens[i][best])
            return nll(model, rows, comps, ctx.task.config.generation.temperature)

        return train_on_policy(
            ctx, cfg, reward, 1.0 / (cfg.n - 1), extra_loss=forward_kl, pg_weight=cfg.b, anchor=anchor
        )

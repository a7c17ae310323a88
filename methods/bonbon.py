"""BoNBoN alignment (Gui et al. 2024): from n reference samples take the best y+ and the worst y-, and
minimise alpha * NLL(y+) + (1 - alpha) * (h - 1/(2 beta_n))^2, beta_n = 1 / (2 (n-1) H_{n-1}).

`pair = "logistic"` swaps the squared term for -log sigmoid(beta_n h), the pair term of the authors'
released code."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from harness import objectives, seeding
from harness.method import MAX_N, METHODS, AlignedPolicy, Method, RunContext
from harness.train import OfflineConfig, PoolPairs, train_offline


class BoNBoNConfig(OfflineConfig):
    n: int = Field(8, ge=2, le=MAX_N, description="Reference samples per group; its best and worst form a pair.")
    alpha: float = Field(0.005, ge=0, le=1, description="Weight of the SFT term on the best sample (paper: 0.005).")
    pair: Literal["ipo", "logistic"] = Field("ipo", description="'ipo' (paper) or 'logistic' (released code).")
    groups_per_prompt: int = Field(4, ge=1, description="Groups of n per training prompt per step.")


@METHODS.register("bonbon")
class BoNBoN(Method[BoNBoNConfig]):
    """Best-of-n imitation from best-and-worst pairs of reference samples."""

    Config = BoNBoNConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg = self.config
        if cfg.n > cfg.pool_size:
            raise ValueError(f"n = {cfg.n} exceeds pool_size = {cfg.pool_size}; groups are drawn from the pool")
        beta_n = objectives.bonbon_beta(cfg.n)
        pool = ctx.pools.get(ctx.task, cfg.pool_size, ctx.seed, stream="train")
        pairs = PoolPairs(pool, ctx.task.train_prompts, ctx.task.config.generation.temperature)

        def batch_loss(model, prompts, step):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seeding.derive_seed(ctx.seed, seeding.TRAIN, step))
            drawn = pairs.gap(model, prompts, cfg.n, cfg.groups_per_prompt, rng)
            if drawn is None:
                return torch.zeros((), requires_grad=True), {"pairs": 0.0}
            h, lp_best, tokens = drawn
            loss = objectives.bonbon_loss(h, -lp_best, beta_n, cfg.alpha, cfg.pair).mean()
            return loss, {"gap": h.mean().item(), "target_gap": 1 / (2 * beta_n), "tokens": tokens}

        return train_offline(ctx, cfg, batch_loss)

"""BoNBoN alignment (Gui et al. 2024): from n reference samples take the best y+ and the worst y-, and
minimise alpha * NLL(y+) + (1 - alpha) * (h - 1/(2 beta_n))^2, beta_n = 1 / (2 (n-1) H_{n-1}).

1/(2 beta_n) = (n-1) H_{n-1} nats is the expected gap h of the pair under pi_BoN when the reward law has no atoms
(continuous rewards). `target = "ties"` replaces it, per prompt, by the expected gap under the tie-aware pi_BoN of
the prompt's reward law (`harness.objectives.bonbon_tied_gap`): exact on enumerable tasks, where rewards tie, and
there above or below the paper's (toy: 1.13 against 1 at n = 2, 15.57 against 18.15 at n = 8); elsewhere it reads
the training pool's empirical law, whose atoms of 1/M bias it low for continuous rewards (15.49 against 18.15 at
M = 16, n = 8). The two agree only for an atomless law. `pair = "logistic"` swaps the squared term for
-log sigmoid(beta_n h), the pair term of the authors' released code."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from harness import objectives, seeding
from harness.method import MAX_N, MAX_STEPS, METHODS, AlignedPolicy, Method, RunContext
from harness.policy import EnumerablePolicy, enumerate_prompt
from harness.training.config import OfflineConfig
from harness.training.offline import train_offline
from harness.training.pairs import PoolPairs


class BoNBoNConfig(OfflineConfig):
    n: int = Field(8, ge=2, le=MAX_N, description="Reference samples per group; its best and worst form a pair.")
    alpha: float = Field(0.005, ge=0, le=1, description="Weight of the SFT term on the best sample (paper: 0.005).")
    pair: Literal["ipo", "logistic"] = Field("ipo", description="'ipo' (paper) or 'logistic' (released code).")
    target: Literal["paper", "ties"] = Field(
        "paper",
        description="Gap target of the ipo pair term: 'paper' (n-1) H_(n-1) nats, or 'ties' the gap under the "
        "tie-aware pi_BoN of the prompt's reward law (where rewards tie; biased low from a pool of continuous ones).",
    )
    groups_per_prompt: int = Field(4, ge=1, le=MAX_STEPS, description="Groups of n per training prompt per step.")

    @model_validator(mode="after")
    def _check(self) -> BoNBoNConfig:
        if self.target == "ties" and self.pair != "ipo":
            raise ValueError("target = 'ties' sets the gap of the ipo pair term; it needs pair = 'ipo'")
        if self.n > self.train_pool_size:
            raise ValueError(
                f"n = {self.n} exceeds train_pool_size = {self.train_pool_size}; groups come from that pool"
            )
        return self


@METHODS.register("bonbon")
class BoNBoN(Method[BoNBoNConfig]):
    """Best-of-n imitation from best-and-worst pairs of reference samples."""

    Config = BoNBoNConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        beta_n = objectives.bonbon_beta(cfg.n)
        pool = ctx.pools.get(task, cfg.train_pool_size, ctx.seed, stream="train")
        pairs = PoolPairs(pool, task.config.generation.temperature)
        gaps = {p.tokens: 1 / (2 * beta_n) for p in task.train_prompts}
        if cfg.target == "ties":
            for i, p in enumerate(task.train_prompts):
                if isinstance(task.reference, EnumerablePolicy):
                    e = enumerate_prompt(task.reference, task.reward, p)
                    gaps[p.tokens] = objectives.bonbon_tied_gap(e.p_ref, e.rewards, cfg.n)
                else:
                    rewards = pool.rewards[i]
                    gaps[p.tokens] = objectives.bonbon_tied_gap(np.ones(len(rewards)), rewards, cfg.n)

        def batch_loss(model, prompts, step):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seeding.step_seed(ctx.seed, step))
            drawn = pairs.gap(model, prompts, cfg.n, cfg.groups_per_prompt, rng)
            if drawn is None:
                return torch.zeros((), requires_grad=True), {"pairs": 0.0}
            h, lp_best, tokens, rows = drawn
            target = torch.tensor([gaps[p.tokens] for p in rows], dtype=h.dtype, device=h.device)
            loss = objectives.bonbon_loss(h, -lp_best, beta_n, cfg.alpha, cfg.pair, target).mean()
            return loss, {"gap": h.mean().item(), "target_gap": target.mean().item(), "tokens": tokens}

        return train_offline(ctx, cfg, batch_loss)

"""DPO (Rafailov et al. 2023) and IPO (Azar et al. 2023) on pairs from the reference pool: of two pooled
samples of a training prompt, the one with the higher proxy reward is chosen.

Both read the log-ratio gap h of the pair over whole sequences, the sum of the per-token log-ratios, as the papers
define it. TRL's IPO averages each completion's log-ratios over its tokens instead; `loss = "ipo_per_token"` is
that convention (the same beta then means a per-token margin 1/(2 beta), a much larger sequence-level one)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from harness import objectives, seeding
from harness.method import MAX_COEF, METHODS, AlignedPolicy, Method, RunContext
from harness.task import MAX_SAMPLES
from harness.training.config import OfflineConfig
from harness.training.offline import train_offline
from harness.training.pairs import PoolPairs


class DPOConfig(OfflineConfig):
    beta: float = Field(0.1, gt=0, le=MAX_COEF, description="Inverse temperature beta of the DPO/IPO loss.")
    loss: Literal["sigmoid", "ipo", "ipo_per_token"] = Field(
        "sigmoid",
        description="'sigmoid' (DPO), 'ipo' (Azar et al. 2023: log-ratios summed over the sequence) or "
        "'ipo_per_token' (IPO on log-ratios averaged per token, as TRL computes it).",
    )
    pairs_per_prompt: int = Field(4, ge=1, le=MAX_SAMPLES, description="Preference pairs per training prompt per step.")


@METHODS.register("dpo")
class DPO(Method[DPOConfig]):
    """Direct preference optimisation on proxy-reward-labelled pairs of reference samples."""

    Config = DPOConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg = self.config
        pool = ctx.pools.get(ctx.task, cfg.train_pool_size, ctx.seed, stream="train")
        pairs = PoolPairs(pool, ctx.task.config.generation.temperature)

        def batch_loss(model, prompts, step):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seeding.step_seed(ctx.seed, step))
            per_token = cfg.loss == "ipo_per_token"
            drawn = pairs.gap(model, prompts, 2, cfg.pairs_per_prompt, rng, per_token=per_token)
            if drawn is None:
                return torch.zeros((), requires_grad=True), {"pairs": 0.0}
            h, _, tokens, _ = drawn
            loss = objectives.dpo_loss(h, cfg.beta, "ipo" if per_token else cfg.loss).mean()
            return loss, {"margin": h.mean().item(), "pairs": float(len(h)), "tokens": tokens}

        return train_offline(ctx, cfg, batch_loss)

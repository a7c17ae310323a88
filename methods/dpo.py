"""DPO (Rafailov et al. 2023) and IPO (Azar et al. 2023) on pairs from the reference pool: of two pooled
samples of a training prompt, the one with the higher proxy reward is chosen."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from harness import objectives, seeding
from harness.method import METHODS, AlignedPolicy, Method, RunContext
from harness.policy import sequence_logprobs
from harness.train import OfflineConfig, pool_extremes, sequence_logprob, train_offline


class DPOConfig(OfflineConfig):
    beta: float = Field(0.1, gt=0, description="Inverse temperature beta of the DPO/IPO loss.")
    loss: Literal["sigmoid", "ipo"] = Field("sigmoid", description="'sigmoid' (DPO) or 'ipo' (Azar et al. 2023).")
    pairs_per_prompt: int = Field(4, ge=1, description="Preference pairs per training prompt per step.")


@METHODS.register("dpo")
class DPO(Method[DPOConfig]):
    """Direct preference optimisation on proxy-reward-labelled pairs of reference samples."""

    Config = DPOConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg = self.config
        pool = ctx.pools.get(ctx.task, cfg.pool_size, ctx.seed, stream="train")
        row = {p.tokens: i for i, p in enumerate(ctx.task.train_prompts)}
        ref = [sequence_logprobs([r])[0] for r in pool.completions.ref_token_logprobs]  # type: ignore[union-attr]

        def batch_loss(model, prompts, step):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seeding.derive_seed(ctx.seed, seeding.TRAIN, step))
            rows, chosen, rejected, ref_gap = [], [], [], []
            for p in prompts:
                i = row[p.tokens]
                best, worst, usable = pool_extremes(pool.rewards[i], 2, cfg.pairs_per_prompt, rng)
                for b, w in zip(best[usable], worst[usable], strict=True):
                    rows.append(p)
                    chosen.append(pool.completions.tokens[i][b])
                    rejected.append(pool.completions.tokens[i][w])
                    ref_gap.append(ref[i][b] - ref[i][w])
            if not rows:
                return torch.zeros((), requires_grad=True), {"pairs": 0.0}
            lp = sequence_logprob(model, rows + rows, chosen + rejected)
            h = lp[: len(rows)] - lp[len(rows) :] - torch.tensor(ref_gap, dtype=lp.dtype, device=lp.device)
            loss = objectives.dpo_loss(h, cfg.beta, cfg.loss).mean()
            tokens = sum(map(len, chosen + rejected))
            return loss, {"margin": h.mean().item(), "pairs": float(len(rows)), "tokens": tokens}

        return train_offline(ctx, cfg, batch_loss)

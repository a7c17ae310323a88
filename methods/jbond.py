"""J-BOND (Sessa et al. 2024, section 5): BOND's Jeffreys mix against a moving anchor, with two anchor samples
per policy sample instead of a pool.

For each policy sample y, two samples y'1, y'2 are drawn from the anchor. Backward term: policy gradient (the
shared PPO core) with reward -log 16 * 1[r(y) < min(r(y'1), r(y'2))] and a KL penalty to the anchor of
coefficient 1 (the backward KL's 1/(n-1) at n = 2) plus `gamma`. Forward term: the negative log-likelihood
of the better of y'1 and y'2 (best-of-2 of the anchor). After every step the anchor's weights move toward the
policy's by an exponential moving average of rate `eta`, so the policy keeps distilling best-of-2 of a
policy that improves: reward rises along training at a growing KL from pi_ref.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from harness import objectives, seeding
from harness.bon import argmax_random_ties
from harness.method import MAX_COEF, METHODS, AlignedPolicy, Method, RunContext
from harness.policy import Completions, Prompt
from harness.training.anchor import Anchor
from harness.training.config import PPOConfig
from harness.training.logprobs import nll
from harness.training.onpolicy import train_on_policy


class JBONDConfig(PPOConfig):
    b: float = Field(0.5, ge=0, le=1, description="Jeffreys mix: weight of the backward KL (paper: 0.5).")
    eta: float = Field(0.02, gt=0, le=1, description="EMA rate of the anchor weights after each step.")
    gamma: float = Field(
        0.0, ge=0, le=MAX_COEF, description="Extra KL(pi || anchor) coefficient on top of the backward KL's 1."
    )


@METHODS.register("jbond")
class JBOND(Method[JBONDConfig]):
    """Best-of-2 distillation against an EMA anchor (J-BOND)."""

    Config = JBONDConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        anchor = Anchor(ema=cfg.eta)
        draws: dict[int, tuple[Completions, list[np.ndarray]]] = {}

        def anchor_pairs(prompts: Sequence[Prompt], step: int) -> tuple[Completions, list[np.ndarray]]:
            """Two anchor samples per policy sample of this step, with their rewards (drawn once per step)."""
            if step not in draws:
                draws.clear()
                seed = seeding.step_seed(ctx.seed, step, "anchor_pairs")
                c = anchor.policy(task).sample(prompts, 2 * cfg.samples_per_prompt, seed)
                draws[step] = c, task.reward.score(prompts, c)
            return draws[step]

        def reward(prompts: Sequence[Prompt], completions: Completions, step: int) -> list[np.ndarray]:
            _, anchor_rewards = anchor_pairs(prompts, step)
            return [
                objectives.jbond_reward(r, a.reshape(len(r), 2))
                for r, a in zip(task.reward.score(prompts, completions), anchor_rewards, strict=True)
            ]

        def forward_kl(model, prompts, step):  # type: ignore[no-untyped-def]
            c, anchor_rewards = anchor_pairs(prompts, step)
            rng = np.random.default_rng(seeding.step_seed(ctx.seed, step, "jbond_forward"))
            rows, comps = [], []
            for p, tokens, a in zip(prompts, c.tokens, anchor_rewards, strict=True):
                pairs = a.reshape(-1, 2)
                for k, best in enumerate(argmax_random_ties(pairs, rng)):
                    rows.append(p)
                    comps.append(tokens[2 * k + best])
            return nll(model, rows, comps, ctx.task.config.generation.temperature)

        return train_on_policy(ctx, cfg, reward, 1.0 + cfg.gamma, extra_loss=forward_kl, pg_weight=cfg.b, anchor=anchor)

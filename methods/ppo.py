"""PPO: KL-regularised RLHF, maximise E[r(y)] - beta KL(pi || pi_ref) (Ziegler et al. 2019; Ouyang et al. 2022).

Optimum: pi_ref exp(r / beta) / Z (harness.targets.kl_regularized_optimum).
"""

from __future__ import annotations

from pydantic import Field

from harness.method import MAX_COEF, METHODS, AlignedPolicy, Method, RunContext
from harness.training.config import PPOConfig
from harness.training.onpolicy import train_on_policy


class PPOMethodConfig(PPOConfig):
    beta: float = Field(1.0, gt=0, le=MAX_COEF, description="KL coefficient beta of E[r] - beta KL(pi || pi_ref).")


@METHODS.register("ppo")
class PPO(Method[PPOMethodConfig]):
    """KL-regularised RLHF on the proxy reward with the shared PPO core."""

    Config = PPOMethodConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        score = ctx.task.reward.score
        return train_on_policy(
            ctx, self.config, lambda prompts, rollout, step: score(prompts, rollout), self.config.beta
        )

"""vBoN: variational best-of-n (Amini et al. 2024), minimise KL(pi || pi_BoN) with the shared PPO core.

`variant = "exact"`: RL reward rho(y) = log pi_BoN(y) - log pi_ref(y) with KL coefficient 1; the optimum is
pi_BoN itself. `variant = "released"`: the scaling of the authors' released code, reward rho(y) / n with KL
coefficient 1/(n-1); its optimum is pi_ref (pi_BoN/pi_ref)^((n-1)/n) / Z (`harness.targets.
vbon_released_optimum`), not pi_BoN: use it to reproduce the paper's numbers. `variant = "l1"`: the lower bound
(Eq. 9), reward log F<(r(y)) with beta = 1/(n-1); optimum pi_ref F^(n-1) / Z.

Every variant reads the strict reward CDF F<(y) = P_{z~pi_ref}(r(z) < r(y)) of Lemma 1, add-one smoothed:
estimated per prompt from a reference pool of the training prompts, (1 + #{j: r_j < r}) / (M + 1) (`cdf =
"pool"`), or by enumeration where the task allows it (`cdf = "exact"`): there `exact` and `released` use the
tie-aware pi_BoN of harness.bon, and `l1` the smoothed (1 + M F<) / (M + 1) with M = train_pool_size, which is what the
pool estimate tends to, so that both CDFs optimise the same objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from harness import bon, objectives
from harness.method import MAX_N, METHODS, AlignedPolicy, Method, RunContext
from harness.policy import (
    Completions,
    EnumerablePolicy,
    Enumeration,
    Prompt,
    enumerate_prompt,
    sequence_logprobs,
)
from harness.task import MAX_SAMPLES, ConfigError, Task
from harness.training.config import PPOConfig
from harness.training.onpolicy import train_on_policy


class VBoNConfig(PPOConfig):
    n: int = Field(8, ge=2, le=MAX_N, description="N of the best-of-n policy to imitate (Amini et al. 2024).")
    variant: Literal["exact", "l1", "released"] = Field(
        "exact",
        description="'exact': reward log pi_BoN/pi_ref, beta 1; 'released': the released code's reward "
        "(1/n) log pi_BoN/pi_ref, beta 1/(n-1); 'l1': the lower bound log F<, beta 1/(n-1).",
    )
    cdf: Literal["pool", "exact"] = Field("pool", description="Reward CDF from the reference pool or by enumeration.")
    train_pool_size: int = Field(
        64,
        ge=2,
        le=MAX_SAMPLES,
        description="Training pool: reference samples per training prompt for the CDF (and the add-one smoothing "
        "of l1).",
    )

    def check_task(self, task: Task) -> None:
        super().check_task(task)
        if self.cdf == "exact" and not isinstance(task.reference, EnumerablePolicy):
            raise ConfigError(
                f"cdf = 'exact' needs an enumerable task; {task.config.name!r} is not (use cdf = 'pool')", ["cdf"]
            )


def kl_coefficient(variant: str, n: int) -> float:
    """beta of each variant: 1 for `exact` (Amini et al. 2024, Eq. 6), 1/(n-1) for `l1` (Eq. 9) and `released`."""
    return 1.0 if variant == "exact" else 1.0 / (n - 1)


@METHODS.register("vbon")
class VBoN(Method[VBoNConfig]):
    """Fine-tune toward the best-of-n distribution at one sample per output."""

    Config = VBoNConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        pool = ctx.pools.get(task, cfg.train_pool_size, ctx.seed, stream="train") if cfg.cdf == "pool" else None
        scale = 1.0 / cfg.n if cfg.variant == "released" else 1.0
        tables: dict[tuple[int, ...], tuple[Enumeration, np.ndarray]] = {}  # cdf='exact': the reward of every outcome

        def reward(prompts: Sequence[Prompt], completions: Completions, step: int) -> list[np.ndarray]:
            r = task.reward.score(prompts, completions)
            ref = sequence_logprobs(task.reference.token_logprobs(prompts, completions.tokens))
            out = []
            for i, p in enumerate(prompts):
                if pool is not None:
                    f = objectives.pool_cdf(pool.rewards[pool.index(p)], r[i])
                    if cfg.variant == "l1":
                        out.append(objectives.vbon_l1_reward(f))
                    else:
                        out.append(scale * objectives.vbon_log_ratio(np.log(f), ref[i], cfg.n))
                else:
                    if p.tokens not in tables:
                        e = enumerate_prompt(task.reference, task.reward, p)  # type: ignore[arg-type]
                        tables[p.tokens] = e, _exact_reward(e.p_ref, e.rewards, cfg)
                    e, table = tables[p.tokens]
                    out.append(table[e.index(completions.tokens[i])])
            return out

        return train_on_policy(ctx, cfg, reward, kl_coefficient(cfg.variant, cfg.n))


def _exact_reward(p_ref: np.ndarray, rewards: np.ndarray, cfg: VBoNConfig) -> np.ndarray:
    """The vBoN reward of every outcome of an enumerated support: tie-aware log pi_BoN/pi_ref ('exact'; divided
    by n for 'released') or the log of the smoothed F< ('l1')."""
    if cfg.variant == "l1":
        f_lt, _ = bon.reward_cdfs(p_ref, rewards)
        return objectives.vbon_l1_reward(objectives.smoothed_cdf(f_lt, cfg.train_pool_size))
    log_ratio = bon.bon_log_ratio(p_ref, rewards, cfg.n)
    return log_ratio / cfg.n if cfg.variant == "released" else log_ratio

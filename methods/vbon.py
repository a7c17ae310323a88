"""vBoN: variational best-of-n (Amini et al. 2024), minimise KL(pi || pi_BoN) with the shared PPO core.

`variant = "exact"`: RL reward rho(y) = log pi_BoN(y) - log pi_ref(y) with KL coefficient 1; the optimum is
pi_BoN itself. `variant = "l1"`: the lower bound, reward log F(r(y)) with beta = 1/(n-1); optimum
pi_ref F^(n-1) / Z. The reward CDF F comes per prompt from a reference pool of the training prompts with
add-one smoothing (`cdf = "pool"`), or exactly by enumeration where the task allows it (`cdf = "exact"`,
which with tied rewards uses the tie-aware pi_BoN of harness.bon).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from harness import bon, objectives
from harness.method import MAX_N, METHODS, AlignedPolicy, Method, RunContext
from harness.policy import Completions, EnumerablePolicy, Prompt, enumerate_prompt, sequence_logprobs
from harness.train import PPOConfig, train_on_policy


class VBoNConfig(PPOConfig):
    n: int = Field(8, ge=2, le=MAX_N, description="N of the best-of-n policy to imitate (Amini et al. 2024).")
    variant: Literal["exact", "l1"] = Field("exact", description="'exact' reward log pi_BoN/pi_ref, or 'l1' bound.")
    cdf: Literal["pool", "exact"] = Field("pool", description="Reward CDF from the reference pool or by enumeration.")
    pool_size: int = Field(64, ge=2, description="Reference samples per training prompt for the CDF (cdf='pool').")


@METHODS.register("vbon")
class VBoN(Method[VBoNConfig]):
    """Fine-tune toward the best-of-n distribution at one sample per output."""

    Config = VBoNConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        if cfg.cdf == "exact" and not isinstance(task.reference, EnumerablePolicy):
            raise ValueError(f"cdf='exact' needs an enumerable task; {task.config.name!r} is not (use cdf='pool')")
        pool = ctx.pools.get(task, cfg.pool_size, ctx.seed, stream="train") if cfg.cdf == "pool" else None
        index = {p.tokens: i for i, p in enumerate(task.train_prompts)}

        def reward(prompts: Sequence[Prompt], completions: Completions, step: int) -> list[np.ndarray]:
            r = task.reward.score(prompts, completions)
            ref = sequence_logprobs(task.reference.logprob(prompts, completions.tokens))
            out = []
            for i, p in enumerate(prompts):
                if pool is not None:
                    f = objectives.pool_cdf(pool.rewards[index[p.tokens]], r[i])
                    if cfg.variant == "l1":
                        out.append(objectives.vbon_l1_reward(f))
                    else:
                        out.append(objectives.vbon_log_ratio(np.log(f), ref[i], cfg.n))
                else:
                    out.append(_exact_reward(task.reference, task.reward, p, completions.tokens[i], cfg))
            return out

        beta = 1.0 if cfg.variant == "exact" else 1.0 / (cfg.n - 1)
        return train_on_policy(ctx, cfg, reward, beta)


def _exact_reward(reference, reward, prompt, tokens, cfg: VBoNConfig) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The vBoN reward by enumeration: tie-aware log pi_BoN/pi_ref ('exact') or log F<=(r) ('l1')."""
    e = enumerate_prompt(reference, reward, prompt)
    pick = e.index(tokens)
    if cfg.variant == "l1":
        _, f_le = bon.reward_cdfs(e.p_ref, e.rewards)
        return np.log(f_le[pick])
    return np.log(bon.bon_distribution(e.p_ref, e.rewards, cfg.n)[pick] / e.p_ref[pick])

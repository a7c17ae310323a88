"""On-policy path (`train_on_policy`): PPO-clip (Schulman et al. 2017) with a value head and GAE (gamma = 1),
maximising E[R(y)] - beta KL(pi || pi_ref) with the KL as a per-token penalty; the sequence reward R is the
method's (proxy reward for ppo, log pi_BoN/pi_ref for vbon, ...). Its optimum is pi_ref exp(R/beta)/Z.

Two choices keep it at that optimum at every beta. The value head reads the policy's hidden states without
sending gradients back into them: the policy shares its trunk (and, in GPT-2, its tied embeddings) with the
value regression, whose pull on the logits is set by the scale of the returns rather than by the objective and,
at large beta, outweighs the KL penalty (the policy then diverges from pi_ref). And the learning rate is
annealed linearly to 0 (`lr_decay`, as in Schulman et al. 2017, Table 5): with whitened advantages Adam takes
steps of a fixed size even where the expected gradient is 0, so at a constant rate the policy keeps
wandering around the optimum by several hundredths of a nat of KL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from harness import seeding
from harness.method import RunContext
from harness.policy import Completions, Prompt
from harness.progress import progress
from harness.training.anchor import Anchor
from harness.training.config import PPOConfig
from harness.training.logprobs import completion_forward
from harness.training.trained import TrainedPolicy
from harness.training.trainer import Trainer

# reward(prompts, rollout, step): one array of sequence rewards per prompt
SequenceReward = Callable[[Sequence[Prompt], Completions, int], list[np.ndarray]]
ExtraLoss = Callable[[Any, list[Prompt], int], torch.Tensor]


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the entries of x where mask is 1."""
    n = mask.sum()
    mean = (x * mask).sum() / n
    return mean, (((x - mean) * mask) ** 2).sum().div(n).sqrt()


def returns_to_go(rewards: torch.Tensor) -> torch.Tensor:
    """sum_{t' >= t} r_t' along the last axis (gamma = 1)."""
    return rewards.flip(-1).cumsum(-1).flip(-1)


def linear_decay(lr: float, step: int, steps: int) -> float:
    """The learning rate of `step` annealed linearly from lr (step 0) toward 0 (Schulman et al. 2017, Table 5)."""
    return lr * (1.0 - step / steps)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """Generalised advantage estimates with gamma = 1 (Schulman et al. 2016, Eq. 16); positions past a
    sequence's end (mask 0) have value 0 and add nothing."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = (rewards[:, t] + next_value - values[:, t]) * mask[:, t]
        last = delta + lam * last * mask[:, t]
        adv[:, t] = last
    return adv


def _kl_from_ref(task: Any, prompts: Sequence[Prompt], rollout: Completions, logprobs: torch.Tensor) -> float:
    """Mean over the rollout of sum_t log pi - log pi_ref, from the policy's token log-probabilities (rows in
    rollout order, padded): the KL that a method with an anchor logs beside its penalty's KL to the anchor."""
    ref = [x for row in task.reference.token_logprobs(prompts, rollout.tokens) for x in row]
    return float(np.mean([logprobs[k, : len(r)].sum().item() - float(np.sum(r)) for k, r in enumerate(ref)]))


def train_on_policy(
    ctx: RunContext,
    config: PPOConfig,
    reward: SequenceReward,
    beta: float,
    extra_loss: ExtraLoss | None = None,
    pg_weight: float = 1.0,
    anchor: Anchor | None = None,
) -> TrainedPolicy:
    """Maximise E[reward(y)] - beta KL(pi || pi_ref) from the task's reference model, on its training prompts.

    `extra_loss(model, prompts, step)`, where given, is added to the PPO loss weighted by 1 - pg_weight (BOND's
    forward-KL term). With an `anchor`, the KL penalty is taken against the anchor instead of pi_ref, and the
    anchor follows the policy after every step."""
    task = ctx.task
    value_head = torch.nn.Linear(task.model.config.hidden_size, 1) if task.model is not None else torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    if task.model is not None:
        value_head.to(next(task.model.parameters()).device)
    trainer = Trainer(ctx, config, extra=list(value_head.parameters()), anchor=anchor)
    model, temperature = trainer.model, task.config.generation.temperature
    assert task.make_policy is not None
    with progress(f"training ({config.steps} steps)", config.steps) as bar:
        bar.advance(bar.task_ids[0], trainer.start)
        for step in range(trainer.start, config.steps):
            prompts = trainer.prompts(step)
            with torch.no_grad():
                rollout = task.make_policy(model).sample(
                    prompts, config.samples_per_prompt, seeding.step_seed(ctx.seed, step)
                )
            seq_reward = torch.tensor(np.concatenate(reward(prompts, rollout, step)), dtype=torch.float32)
            kl_to = task.reference if anchor is None else anchor.policy(task)
            ref = kl_to.token_logprobs(prompts, rollout.tokens)
            rows = [p for p in prompts for _ in range(config.samples_per_prompt)]
            comps = [c for row in rollout.tokens for c in row]
            if config.lr_decay:
                for group in trainer.optimizer.param_groups:
                    group["lr"] = linear_decay(config.lr, step, config.steps)
            for epoch in range(config.ppo_epochs):
                lp, v, mask = completion_forward(model, value_head, rows, comps, temperature)
                assert v is not None
                if epoch == 0:
                    # The rollout's log-probabilities and values are those of this first forward pass (the
                    # policy has not moved yet), so no separate pass without gradients is needed.
                    old_lp, old_v = lp.detach(), v.detach()
                    ref_lp = torch.zeros_like(old_lp)
                    for k, r in enumerate(x for row in ref for x in row):
                        ref_lp[k, : len(r)] = torch.tensor(r, dtype=torch.float32)
                    kl_tok = (old_lp - ref_lp) * mask
                    kl_ref = (
                        kl_tok.sum(1).mean().item() if anchor is None else _kl_from_ref(task, prompts, rollout, old_lp)
                    )
                    rewards = -beta * kl_tok
                    last = mask.sum(1).long() - 1
                    rewards[torch.arange(len(rows)), last] += seq_reward.to(rewards.device)
                    # The value head predicts returns in units of this rollout's returns-to-go, so that it fits
                    # returns of any scale (ppo's rewards, vbon's log-ratios) at the policy's learning rate.
                    v_mean, v_std = masked_mean_std(returns_to_go(rewards), mask)
                    v_std = v_std + 1e-8
                    adv = gae(rewards, (v_mean + v_std * old_v) * mask, mask, config.gae_lambda)
                    target = (adv / v_std + old_v) * mask  # the returns, (adv + value - v_mean) / v_std
                    n_tok = mask.sum()
                    a_mean, a_std = masked_mean_std(adv, mask)
                    adv = (adv - a_mean) / (a_std + 1e-8) * mask
                ratio = torch.exp(lp - old_lp)
                pg = -torch.min(ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv)
                loss = ((pg + config.value_coef * (v - target) ** 2) * mask).sum() / n_tok
                if extra_loss is not None:
                    loss = pg_weight * loss + (1 - pg_weight) * extra_loss(model, prompts, step)
                trainer.update(loss, step)
            trainer.add_tokens(int(n_tok.item()))
            proxy = np.concatenate(task.reward.score(prompts, rollout)).mean()  # ppo's own reward; vbon's is rho
            trainer.log(
                step,
                loss=loss.item(),
                reward=float(proxy),
                objective=seq_reward.mean().item(),
                kl=kl_ref,
                **({} if anchor is None else {"kl_anchor": kl_tok.sum(1).mean().item()}),
            )
            if anchor is not None:
                anchor.follow(model, step)
            trainer.checkpoint(step)
            bar.update(bar.task_ids[0], advance=1, description=f"training  {trainer.status}")
    return trainer.result()

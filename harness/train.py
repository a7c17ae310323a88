"""The one training core that every fine-tuning method uses, so that leaderboard differences come from the
objectives and not from the trainers: the same optimizer (AdamW), gradient clipping, batching and logging.

On-policy path (`train_on_policy`): PPO-clip (Schulman et al. 2017) with a value head and GAE (gamma = 1),
maximising E[R(y)] - beta KL(pi || pi_ref) with the KL as a per-token penalty; the sequence reward R is the
method's (proxy reward for ppo, log pi_BoN/pi_ref for vbon, ...). Its optimum is pi_ref exp(R/beta)/Z.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field

from harness import seeding
from harness.method import AlignedPolicy, MethodConfig, RunContext, TrainingCost
from harness.policy import Completions, Policy, Prompt, sequence_logprobs
from harness.progress import progress

log = logging.getLogger(__name__)

SequenceReward = Callable[[Sequence[Prompt], Completions], list[np.ndarray]]


class TrainConfig(MethodConfig):
    """What every training method shares (the same budget and optimizer for all of them)."""

    steps: int = Field(200, ge=1, description="Rollout-and-update steps.")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (constant).")
    prompts_per_step: int = Field(8, ge=1, description="Training prompts per step (cycled in a seeded order).")
    samples_per_prompt: int = Field(16, ge=1, description="On-policy samples per prompt per step.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    log_every: int = Field(25, ge=1, description="Steps between log lines of loss, reward and KL.")


class PPOConfig(TrainConfig):
    """The on-policy path: PPO-clip with a value head and GAE (Schulman et al. 2017; Ouyang et al. 2022)."""

    ppo_epochs: int = Field(2, ge=1, description="Optimisation passes over each rollout.")
    clip: float = Field(0.2, gt=0, description="PPO ratio clipping epsilon.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (gamma is 1).")
    value_coef: float = Field(0.5, ge=0, description="Weight of the value loss.")


class TrainedPolicy(AlignedPolicy):
    """A fine-tuned copy of the reference model: one sample per output, with per-token log-probabilities."""

    def __init__(self, policy: Policy, training: TrainingCost):
        self.policy = policy
        self.training = training

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        return self.policy.sample(prompts, count, seed)

    def logprob(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[np.ndarray] | None:
        return sequence_logprobs(self.policy.logprob(prompts, tokens))


def completion_forward(
    model: Any, value_head: torch.nn.Module, prompts: Sequence[Prompt], comps: Sequence[tuple[int, ...]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities and values of completions, with gradients; padded to (rows, T) with a mask.

    Rows are right-padded so that every real token keeps the position it was sampled at.
    """
    seqs = [p.tokens + tuple(c) for p, c in zip(prompts, comps, strict=True)]
    width, t_max = max(map(len, seqs)), max(map(len, comps))
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    attn = torch.zeros_like(ids)
    for k, s in enumerate(seqs):
        ids[k, : len(s)] = torch.tensor(s)
        attn[k, : len(s)] = 1
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), attention_mask=attn.to(device), output_hidden_states=True)
    logp = out.logits.float().log_softmax(-1)
    hidden = out.hidden_states[-1].float()
    rows, lp, val, mask = len(seqs), [], [], torch.zeros((len(seqs), t_max), device=device)
    index = torch.zeros((rows, t_max), dtype=torch.long, device=device)
    target = torch.zeros((rows, t_max), dtype=torch.long, device=device)
    for k, (p, c) in enumerate(zip(prompts, comps, strict=True)):
        start = len(p.tokens) - 1
        index[k, : len(c)] = torch.arange(start, start + len(c), device=device)
        target[k, : len(c)] = torch.tensor(c, device=device)
        mask[k, : len(c)] = 1
    rows_ix = torch.arange(rows, device=device)[:, None]
    lp = logp[rows_ix, index].gather(-1, target[..., None])[..., 0] * mask
    val = value_head(hidden[rows_ix, index])[..., 0] * mask
    return lp, val, mask


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


def train_on_policy(ctx: RunContext, config: PPOConfig, reward: SequenceReward, beta: float) -> TrainedPolicy:
    """Maximise E[reward(y)] - beta KL(pi || pi_ref) from the task's reference model, on its training prompts."""
    task = ctx.task
    if task.model is None or task.make_policy is None:
        raise ValueError(f"task {task.config.name!r} has no trainable reference model")
    if not task.train_prompts:
        raise ValueError(f"task {task.config.name!r} has no training prompts")
    torch.manual_seed(seeding.derive_seed(ctx.seed, seeding.TRAIN))
    model = copy.deepcopy(task.model).eval()  # eval: no dropout, so that old and new log-probs agree
    value_head = torch.nn.Linear(model.config.hidden_size, 1).to(next(model.parameters()).device)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    order = np.random.default_rng(seeding.derive_seed(ctx.seed, seeding.TRAIN)).permutation(len(task.train_prompts))
    t0, tokens = time.perf_counter(), 0
    with progress(f"training ({config.steps} steps)", config.steps) as bar:
        for step in range(config.steps):
            pick = [order[(step * config.prompts_per_step + i) % len(order)] for i in range(config.prompts_per_step)]
            prompts = [task.train_prompts[i] for i in pick]
            with torch.no_grad():
                rollout = task.make_policy(model).sample(
                    prompts, config.samples_per_prompt, seeding.derive_seed(ctx.seed, seeding.TRAIN, step)
                )
            seq_reward = torch.tensor(np.concatenate(reward(prompts, rollout)), dtype=torch.float32)
            ref = task.reference.logprob(prompts, rollout.tokens)
            rows = [p for p in prompts for _ in range(config.samples_per_prompt)]
            comps = [c for row in rollout.tokens for c in row]
            with torch.no_grad():
                old_lp, old_v, mask = completion_forward(model, value_head, rows, comps)
            ref_lp = torch.zeros_like(old_lp)
            for k, r in enumerate(x for row in ref for x in row):
                ref_lp[k, : len(r)] = torch.tensor(r, dtype=torch.float32)
            kl_tok = (old_lp - ref_lp) * mask
            rewards = -beta * kl_tok
            last = mask.sum(1).long() - 1
            rewards[torch.arange(len(rows)), last] += seq_reward.to(rewards.device)
            adv = gae(rewards, old_v, mask, config.gae_lambda)
            returns = adv + old_v
            n_tok = mask.sum()
            mean = (adv * mask).sum() / n_tok
            std = (((adv - mean) * mask) ** 2).sum().div(n_tok).sqrt()
            adv = (adv - mean) / (std + 1e-8) * mask
            for _ in range(config.ppo_epochs):
                lp, v, _ = completion_forward(model, value_head, rows, comps)
                ratio = torch.exp(lp - old_lp)
                pg = -torch.min(ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv)
                loss = ((pg + config.value_coef * (v - returns) ** 2) * mask).sum() / n_tok
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {config.lr})")
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
            tokens += int(n_tok.item())
            if step % config.log_every == 0 or step == config.steps - 1:
                log.info(
                    "step %d  loss %.4f  reward %.4f  kl %.4f",
                    step,
                    loss.item(),
                    seq_reward.mean().item(),
                    kl_tok.sum(1).mean().item(),
                )
            bar.advance(bar.task_ids[0])
    cost = TrainingCost(steps=config.steps, tokens=tokens, seconds=round(time.perf_counter() - t0, 3))
    return TrainedPolicy(task.make_policy(model), cost)

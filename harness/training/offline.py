"""The offline path: minimise a method's loss on completions that were sampled before training (from the
reference pool of the training prompts), with no rollouts; each logged step probes the policy with a few fresh
samples for its reward and KL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from harness.method import RunContext
from harness.policy import Prompt
from harness.progress import progress
from harness.training.config import OfflineConfig
from harness.training.trained import TrainedPolicy
from harness.training.trainer import Trainer

PairLoss = Callable[[Any, list[Prompt], int], tuple[torch.Tensor, dict[str, float]]]


def train_offline(ctx: RunContext, config: OfflineConfig, batch_loss: PairLoss) -> TrainedPolicy:
    """Minimise `batch_loss(model, prompts, step)` (pairwise or SFT losses on pooled reference samples)."""
    trainer = Trainer(ctx, config)
    with progress(f"training ({config.steps} steps)", config.steps) as bar:
        bar.advance(bar.task_ids[0], trainer.start)
        for step in range(trainer.start, config.steps):
            loss, info = batch_loss(trainer.model, trainer.prompts(step), step)
            trainer.update(loss, step)
            trainer.add_tokens(int(info.pop("tokens", 0)))
            if trainer.due(step):
                info |= trainer.probe(trainer.prompts(step), step)
            trainer.log(step, loss=loss.item(), **info)
            trainer.checkpoint(step)
            bar.update(bar.task_ids[0], advance=1, description=f"training  {trainer.status}")
    return trainer.result()

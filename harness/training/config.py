"""The training methods' configs: what every training method shares (`TrainConfig`, one budget and optimizer
for all of them) and the settings of each path (`PPOConfig` on-policy, `OfflineConfig` offline). A method's own
config subclasses the one of the path it trains on."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from transformers.pytorch_utils import Conv1D

from harness.method import MAX_COEF, MAX_STEPS, OPERATIONAL, MethodConfig
from harness.task import MAX_SAMPLES, ConfigError, Task


class TrainConfig(MethodConfig):
    """What every training method shares (the same budget and optimizer for all of them)."""

    steps: int = Field(200, ge=1, le=MAX_STEPS, description="Rollout-and-update steps.")
    lr: float = Field(
        3e-3, gt=0, description="AdamW learning rate (on the on-policy path annealed to 0 where lr_decay is on)."
    )
    prompts_per_step: int = Field(
        8, ge=1, le=MAX_SAMPLES, description="Training prompts per step (cycled in a seeded order)."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    log_every: int = Field(
        25, ge=1, description="Steps between log lines of loss, reward and KL.", json_schema_extra=OPERATIONAL
    )
    checkpoint_every: int = Field(
        25, ge=1, description="Steps between checkpoints (an interrupted run resumes).", json_schema_extra=OPERATIONAL
    )
    lora_rank: int = Field(0, ge=0, description="LoRA rank on every linear layer (peft); 0 trains all weights.")

    def check_task(self, task: Task) -> None:
        if task.model is None:
            return  # the trainer says that the task has nothing to train
        width = lora_width(task.model)
        if self.lora_rank > width:
            raise ConfigError(
                f"lora_rank = {self.lora_rank} exceeds {width}, the narrowest side of the model's linear layers "
                f"(accepted: 0, which trains all weights, to {width})",
                ["lora_rank"],
            )


class PPOConfig(TrainConfig):
    """The on-policy path: PPO-clip with a value head and GAE (Schulman et al. 2017; Ouyang et al. 2022)."""

    samples_per_prompt: int = Field(16, ge=1, le=MAX_SAMPLES, description="On-policy samples per prompt per step.")
    ppo_epochs: int = Field(2, ge=1, le=MAX_STEPS, description="Optimisation passes over each rollout.")
    clip: float = Field(0.2, gt=0, description="PPO ratio clipping epsilon.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (gamma is 1).")
    value_coef: float = Field(0.5, ge=0, le=MAX_COEF, description="Weight of the value loss.")
    lr_decay: bool = Field(True, description="Anneal the learning rate linearly from lr to 0 over the steps.")


class OfflineConfig(TrainConfig):
    """The offline path: losses on completions drawn from the reference pool of the training prompts."""

    train_pool_size: int = Field(
        64,
        ge=2,
        le=MAX_SAMPLES,
        description="Training pool: reference samples per training prompt to draw pairs from (--pool-size sets the "
        "evaluation pool).",
    )


def lora_width(model: Any) -> int:
    """The smallest side of the linear layers that LoRA adapts (every one but the output embedding, as peft's
    `all-linear` does; GPT-2's Conv1D included): the largest rank at which an adapter is still low rank. 0 when the
    model has none."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    sides = [
        min(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear | Conv1D) and m is not output
    ]
    return min(sides, default=0)

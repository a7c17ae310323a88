"""BOND's anchor (Sessa et al. 2024, sections 4-5): the moving copy of the policy that a method distils from and
takes its KL penalty against, in place of pi_ref."""

from __future__ import annotations

import copy
from typing import Any

import torch

from harness.policy import Policy


class Anchor:
    """A frozen copy of the policy in training that a method distils from and takes its KL penalty against
    (BOND's anchor, Sessa et al. 2024, sections 4-5). It starts as pi_ref and follows the policy after each step
    by an exponential moving average of the weights (`ema`, J-BOND) and/or by a full copy every `every` steps
    (iterative BOND). Its weights are checkpointed with the trainer."""

    def __init__(self, ema: float = 0.0, every: int = 0):
        self.ema, self.every = ema, every
        self.model: Any = None

    def bind(self, model: Any) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def tensors(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def policy(self, task: Any) -> Policy:
        return task.make_policy(self.model)

    @torch.no_grad()
    def follow(self, model: Any, step: int) -> None:
        """Move toward `model` after `step`."""
        pairs = list(zip(self.tensors(), model.parameters(), strict=True))
        if self.ema:
            for a, p in pairs:
                a.lerp_(p, self.ema)
        if self.every and (step + 1) % self.every == 0:
            for a, p in pairs:
                a.copy_(p)

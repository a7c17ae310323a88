"""The process's place in a multi-process run (`accelerate launch` or `torchrun`); one process otherwise."""

from __future__ import annotations

import torch
from accelerate import PartialState


def process_state() -> PartialState:
    """Accelerate's process state; without CUDA the processes of a `torchrun` launch talk over gloo."""
    return PartialState(cpu=not torch.cuda.is_available())

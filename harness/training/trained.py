"""The outcome of training: the trained policy that is evaluated like any other, and loading one back from the
weights that `Trainer.result` saved into a run directory."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers.utils import logging as hf_logging

from harness import store
from harness.method import AlignedPolicy, TrainingCost
from harness.policy import Completions, Policy, Prompt, sequence_logprobs

hf_logging.disable_progress_bar()  # saving and loading weights: the harness shows its own progress


class TrainedPolicy(AlignedPolicy):
    """A fine-tuned copy of the reference model: one sample per output, with per-token log-probabilities."""

    def __init__(self, policy: Policy, training: TrainingCost):
        self.policy = policy
        self.training = training

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        return self.policy.sample(prompts, count, seed)

    def logprob(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[np.ndarray] | None:
        return sequence_logprobs(self.policy.logprob(prompts, tokens))


def load_trained(task: Any, path: Path, training: TrainingCost) -> TrainedPolicy:
    """A policy saved by `Trainer.result` (full weights, or a LoRA adapter over the task's reference model), after
    checking its files against the checksums of the run directory that holds it."""
    if task.model is None or task.make_policy is None:
        raise ValueError(f"task {task.config.name!r} has no trainable reference model to load {path} into")
    store.verify_all(path.parent, under=f"{path.name}/", remedy=store.RUN_REMEDY)
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(copy.deepcopy(task.model), path)
    else:
        model = type(task.model).from_pretrained(path, dtype=task.model.dtype).to(task.model.device)
    return TrainedPolicy(task.make_policy(model.eval()), training)

"""The outcome of training: the trained policy that is evaluated like any other, and loading one back from saved
weights: those that `Trainer.result` saved into a run directory, or a checkpoint trained elsewhere (a
transformers model directory, or a peft adapter over the task's reference model; docs/external.md)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from transformers.utils import logging as hf_logging

from harness import store
from harness.method import AlignedPolicy, TrainingCost
from harness.policy import Completions, Policy, Prompt, sequence_logprobs
from harness.task import ConfigError

hf_logging.disable_progress_bar()  # saving and loading weights: the harness shows its own progress

MODEL_FILE, ADAPTER_FILE = "config.json", "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


class TrainedPolicy(AlignedPolicy):
    """A fine-tuned copy of the reference model: one sample per output, with per-token log-probabilities."""

    def __init__(self, policy: Policy, training: TrainingCost):
        self.policy = policy
        self.training = training

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        return self.policy.sample(prompts, count, seed)

    def sequence_logprobs(
        self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]
    ) -> list[np.ndarray] | None:
        return sequence_logprobs(self.policy.token_logprobs(prompts, tokens))


def checkpoint_kind(path: Path) -> Literal["model", "adapter"]:
    """Whether `path` holds a transformers model (config.json) or a peft adapter (adapter_config.json); a
    ValueError says what it is instead."""
    if not path.exists():
        raise ValueError("no such directory")
    if not path.is_dir():
        raise ValueError("not a directory")
    if (path / ADAPTER_FILE).is_file():
        return "adapter"
    if (path / MODEL_FILE).is_file():
        return "model"
    raise ValueError(
        f"neither a transformers model directory (no {MODEL_FILE}) nor a peft adapter directory (no {ADAPTER_FILE})"
    )


def check_checkpoint(task: Any, path: Path) -> None:
    """A checkpoint that the task's reference model cannot stand in for is a ConfigError naming both, before any
    sampling: a task without a model to load into, another vocabulary size, or another tokenizer (where the
    checkpoint ships one and the task's reference has one)."""
    name = task.config.name
    if task.model is None or task.make_policy is None:
        raise ConfigError(f"task {name!r} has no transformers reference model to load the checkpoint {path} into")
    try:
        kind = checkpoint_kind(path)
    except ValueError as e:
        raise ConfigError(f"model = {str(path)!r}: {e}", ["model"]) from None
    from transformers import AutoConfig, AutoTokenizer

    ref_size = task.model.config.get_text_config().vocab_size
    if kind == "model":
        try:
            size = AutoConfig.from_pretrained(path).get_text_config().vocab_size
        except (OSError, ValueError) as e:
            raise ConfigError(f"model = {str(path)!r}: its {MODEL_FILE} cannot be read: {_first_line(e)}") from None
        if size != ref_size:
            raise ConfigError(
                f"the model at {path} has a vocabulary of {size} tokens, the reference model of task {name!r} "
                f"{ref_size}: a policy must share its reference's vocabulary",
                ["model"],
            )
    ref_tokenizer = getattr(task.reference, "tokenizer", None)
    if ref_tokenizer is None or not any((path / f).is_file() for f in TOKENIZER_FILES):
        return
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model = {str(path)!r}: its tokenizer cannot be read: {_first_line(e)}") from None
    if tokenizer.get_vocab() != ref_tokenizer.get_vocab():
        raise ConfigError(
            f"the tokenizer of {path} ({_describe(tokenizer)}) does not match the reference tokenizer of task "
            f"{name!r} ({_describe(ref_tokenizer)}): a policy must share its reference's tokenizer",
            ["model"],
        )


def _describe(tokenizer: Any) -> str:
    return f"{type(tokenizer).__name__}, {len(tokenizer.get_vocab())} tokens, from {tokenizer.name_or_path}"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def load_model(task: Any, path: Path) -> Any:
    """The transformers model saved at `path`: full weights (of any causal LM architecture), or a LoRA adapter over
    the task's reference model. Weights the checkpoint lacks are an error, never a random initialisation."""
    if task.model is None or task.make_policy is None:
        raise ValueError(f"task {task.config.name!r} has no trainable reference model to load {path} into")
    if (path / ADAPTER_FILE).is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(task.model), path).eval()
    from transformers import AutoModelForCausalLM

    loaded: Any = AutoModelForCausalLM.from_pretrained(path, dtype=task.model.dtype, output_loading_info=True)
    model, info = loaded
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise ValueError(f"the checkpoint at {path} lacks weights of its model: {missing}")
    return model.to(task.model.device).eval()


def load_checkpoint(task: Any, path: Path) -> Any:
    """A checkpoint trained elsewhere (`check_checkpoint`, then `load_model`); one that cannot be loaded is a
    ConfigError naming it, before any sampling."""
    check_checkpoint(task, path)
    try:
        return load_model(task, path)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:  # what the loaders raise on a bad checkpoint
        why = f"cannot be loaded as a policy of task {task.config.name!r}: {_first_line(e)}"
        raise ConfigError(f"model = {str(path)!r} {why}", ["model"]) from None


def load_trained(task: Any, path: Path, training: TrainingCost) -> TrainedPolicy:
    """A policy saved by `Trainer.result` (`load_model`) as the task's kind of policy, after checking its files
    against the checksums of the run directory that holds it."""
    store.verify_all(path.parent, under=f"{path.name}/", remedy=store.RUN_REMEDY)
    return TrainedPolicy(task.make_policy(load_model(task, path)), training)

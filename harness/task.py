"""Tasks: validated YAML configs (`tasks/*.yaml`) and the runtime objects their builders return."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.policy import EnumerablePolicy, Policy, Prompt, Reward
from harness.registry import Registry, package_modules


class ConfigError(ValueError):
    """A bad value in a run's configuration; the message names the field and what is accepted. `fields` holds
    the dotted paths of the bad fields."""

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = fields or []


def validation_fields(e: ValidationError) -> list[str]:
    return [".".join(str(x) for x in err["loc"]) for err in e.errors()]


def one_line(what: str, e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc} = {err.get('input')!r}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(ge=1, description="Completion length in tokens (the maximum, where EOS can end it).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the reference policy.")
    top_k: int = Field(0, ge=0, description="Top-k filtering; 0 disables it.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus filtering; 1 disables it.")


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    samples_per_prompt: int = Field(256, ge=1, description="Outputs drawn from the aligned policy per prompt.")
    reference_samples: int = Field(256, ge=1, description="Held-out reference samples per prompt for win rate.")
    pool_size: int = Field(64, ge=1, description="Reference samples per prompt in the shared pool (BoN for n <= it).")
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples of prompts for confidence intervals.")


class TaskConfig(BaseModel):
    """A task as its YAML file states it; `version` is echoed into every result."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = Field(ge=1)
    description: str = ""
    builder: str = Field(description="'module:function' that turns this config into a Task.")
    params: dict[str, Any] = Field(default_factory=dict, description="Arguments of the builder.")
    generation: GenerationConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Default hyperparameters of each method on this task."
    )

    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskConfig:
        with open(path) as f:
            return cls.model_validate(yaml.safe_load(f))


@dataclass
class Task:
    """A built task: the prompts to evaluate on, the reference policy and the rewards."""

    config: TaskConfig
    prompts: list[Prompt]
    reference: Policy
    reward: Reward
    gold_reward: Reward | None = None
    # Further per-output scores reported beside the rewards (e.g. ROUGE-L against a human reference); never
    # optimised by any method.
    extra_metrics: dict[str, Reward] = field(default_factory=dict)
    train_prompts: list[Prompt] = field(default_factory=list)  # for methods that train; disjoint from `prompts`
    # For methods that train: the reference policy's torch model (copied, never changed) and how a trained
    # copy of it becomes a Policy of the same kind as `reference`.
    model: Any = None
    make_policy: Callable[[Any], Policy] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # recorded in every result (e.g. reward accuracies)

    @property
    def exact(self) -> bool:
        """Whether every completion can be enumerated, so that metrics are computed exactly."""
        return isinstance(self.reference, EnumerablePolicy)


def _builtin_tasks() -> list[tuple[str, str]]:
    return [(stem, path) for stem, path in package_modules("tasks", suffix=".yaml")]


TASKS: Registry[TaskConfig] = Registry("task", "harness.tasks", _builtin_tasks)


def load_task(name: str) -> TaskConfig:
    """The config of a registered task (a YAML path, or a 'module:attr' naming a TaskConfig), or of the task
    YAML file `name` (e.g. a copy of a shipped task with its params changed for a GPU)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return TaskConfig.from_yaml(name)
    target = TASKS.target(name)
    if isinstance(target, str) and target.endswith((".yaml", ".yml")):
        return TaskConfig.from_yaml(target)
    return TASKS.get(name)


def build_task(config: TaskConfig) -> Task:
    module_name, _, attr = config.builder.partition(":")
    build = getattr(importlib.import_module(module_name), attr)
    try:
        task = build(config)
    except ValidationError as e:
        raise ConfigError(one_line(f"task {config.name!r} params", e), validation_fields(e)) from None
    if not isinstance(task, Task):
        raise TypeError(f"task builder {config.builder!r} returned {type(task).__name__}, expected a Task")
    return task

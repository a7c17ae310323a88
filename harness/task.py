"""Tasks: validated YAML configs (`tasks/*.yaml`) and the runtime objects their builders return."""

from __future__ import annotations

import difflib
import importlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from harness import yaml12
from harness.policy import EnumerablePolicy, Policy, Prompt, Reward
from harness.registry import NAME_PATTERN, BadNameError, Registry, UnknownNameError, package_modules


class ConfigError(ValueError):
    """A bad value in a run's configuration; the message names the field and what is accepted. `fields` holds
    the dotted paths of the bad fields."""

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = fields or []


def validation_fields(e: ValidationError) -> list[str]:
    return [".".join(str(x) for x in err["loc"]) for err in e.errors()]


def one_line(what: str, e: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The errors of validating `model` (where given, an unknown key is named with the keys it accepts)."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if not loc and err["type"] == "value_error":  # a check of the whole config, which names its fields itself
            parts.append(err["msg"].removeprefix("Value error, "))
            continue
        accepted = accepted_keys(model, err["loc"][:-1]) if err["type"] == "extra_forbidden" else None
        if accepted is None:
            parts.append(f"{loc or '(root)'} = {err.get('input')!r}: {err['msg']}")
            continue
        key = str(err["loc"][-1])
        spelling = accepted.get(key)
        if spelling is not None:  # a field given under its name and under its alias (softbon's lam and lambda)
            parts.append(f"{key!r} and {spelling!r} are one setting given twice: give {spelling!r} once")
            continue
        close = difflib.get_close_matches(key, list(accepted.values()), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"unknown key {loc!r}{hint}; accepted: {', '.join(accepted.values()) or 'none'}")
    return f"invalid {what}: " + "; ".join(parts)


def accepted_keys(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> dict[str, str] | None:
    """The fields of the (nested) model at `loc` inside `model`, each as it is spelled in configs (its alias, where
    it has one), by field name; None where no model is known there."""
    for part in loc:
        field = model.model_fields.get(str(part)) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return None if model is None else {name: f.alias or name for name, f in model.model_fields.items()}


MAX_NEW_TOKENS = 16384
MAX_SAMPLES = 1_000_000  # per prompt: bounds every sample count, so that a typo fails here, not as a MemoryError
MAX_BOOTSTRAP = 100_000  # bootstrap resamples (an array of resamples x prompts is drawn)


class StrictModel(BaseModel):
    """A config whose unknown keys, non-finite floats and booleans given for numbers are errors (YAML reads
    `n: true` as a boolean, which pydantic would otherwise take as 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float, int | None, float | None):
                raise ValueError("Input should be a number, not a boolean")
        return value


class GenerationConfig(StrictModel):
    max_new_tokens: int = Field(
        ge=1, le=MAX_NEW_TOKENS, description="Completion length in tokens (the maximum, where EOS can end it)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the reference policy.")
    top_k: int = Field(0, ge=0, description="Top-k filtering; 0 disables it.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus filtering; 1 disables it.")


class EvaluationConfig(StrictModel):
    samples_per_prompt: int = Field(
        256, ge=1, le=MAX_SAMPLES, description="Outputs drawn from the aligned policy per prompt."
    )
    reference_samples: int = Field(
        256, ge=1, le=MAX_SAMPLES, description="Held-out reference samples per prompt for win rate."
    )
    pool_size: int = Field(
        64, ge=1, le=MAX_SAMPLES, description="Reference samples per prompt in the shared pool (BoN for n <= it)."
    )
    bootstrap: int = Field(
        2000, ge=100, le=MAX_BOOTSTRAP, description="Bootstrap resamples of prompts for confidence intervals."
    )
    train_prompts: int = Field(
        0,
        ge=0,
        le=MAX_SAMPLES,
        description="A trained policy is also evaluated on this many of its training prompts (the first ones), "
        "reported as `<metric>_train`; 0: on the evaluation prompts alone.",
    )

    @model_serializer(mode="wrap")
    def _without_defaults_added_later(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # train_prompts at its default 0 is left out, so that every run stored before the setting existed keeps
        # the config hash that names it in the store
        out: dict[str, Any] = handler(self)
        if out.get("train_prompts") == 0:
            del out["train_prompts"]
        return out


class TaskConfig(StrictModel):
    """A task as its YAML file states it; `version` is echoed into every result."""

    name: str = Field(pattern=f"^{NAME_PATTERN}$", description="The task's name in the results store.")
    version: int = Field(ge=1)
    description: str = ""
    builder: str = Field(description="'module:function' that turns this config into a Task.")
    params: dict[str, Any] = Field(default_factory=dict, description="Arguments of the builder.")
    generation: GenerationConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Default hyperparameters of each method on this task."
    )
    # The directory of a task file given by path: its builder's module may sit beside it (not part of the config).
    _directory: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _finite_params(self) -> TaskConfig:
        """Builders read their params as they please; a non-finite number is refused for all of them here."""
        for where, value in _leaves(self.params):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"params.{where} = {value}: Input should be a finite number")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskConfig:
        raw = _task_file_mapping(path)
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(one_line(f"task file {str(path)!r}", e, cls), validation_fields(e)) from None


def _task_file_mapping(path: str | Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping a task file states. Where it names a `base` (a registered task, or a task file's path relative
    to it), the file's keys are laid over the base's: mappings merge key by key, any other value replaces the
    base's. So a variant states only what it changes, and cannot drift from the task it varies."""
    try:
        raw = yaml12.load(yaml12.read(path))
    except OSError as e:
        raise ConfigError(f"cannot read task file {str(path)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"task file {str(path)!r} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"task file {str(path)!r} is not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"task file {str(path)!r} holds {type(raw).__name__ if raw is not None else 'nothing'}, not a mapping "
            f"with the keys {', '.join(TaskConfig.model_fields)}"
        )
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(
            f"task file {str(path)!r}: base = {base!r}: expected a registered task's name or a task file's path"
        )
    chain = (*chain, Path(path).resolve())
    if base.endswith((".yaml", ".yml")):
        file = Path(path).parent / base
        if not file.is_file():
            raise ConfigError(f"task file {str(path)!r}: base task file {str(file)!r} not found")
    else:
        try:
            target = TASKS.target(base)
        except (UnknownNameError, BadNameError) as e:
            raise ConfigError(f"task file {str(path)!r}: base: {e}") from None
        if not (isinstance(target, str) and target.endswith((".yaml", ".yml"))):
            return _laid_over(TASKS.get(base).model_dump(), raw)
        file = Path(target)
    if file.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, file.resolve()))
        raise ConfigError(f"task file {str(path)!r}: its bases lead back to a file already read ({cycle})")
    return _laid_over(_task_file_mapping(file, chain), raw)


def _laid_over(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        old = out.get(key)
        out[key] = _laid_over(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def _leaves(value: Any, where: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every scalar in nested mappings and lists."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{where}.{i}")]
    return [(where, value)]


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
    # For methods that train. Disjoint from `prompts` on the tasks that sample real text (imdb, aclsum, the hub
    # tasks); `toy` trains on its evaluation prompts, since it is solved exactly on them.
    train_prompts: list[Prompt] = field(default_factory=list)
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
    return [(stem, path) for stem, path in package_modules("harness.tasks", suffix=".yaml")]


TASKS: Registry[TaskConfig] = Registry("task", "harness.tasks", _builtin_tasks)


def load_task(name: str) -> TaskConfig:
    """The config of a registered task (a YAML path, or a 'module:attr' naming a TaskConfig), or of the task
    YAML file `name` (e.g. a copy of a shipped task with its params changed for a GPU)."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise ConfigError(f"task file {name!r} not found")
        config = TaskConfig.from_yaml(name)
        config._directory = str(Path(name).resolve().parent)
        _not_a_look_alike(config, name)
        return config
    target = TASKS.target(name)
    if isinstance(target, str) and target.endswith((".yaml", ".yml")):
        return TaskConfig.from_yaml(target)
    return TASKS.get(name)


def _not_a_look_alike(config: TaskConfig, path: str) -> None:
    """Refuse a task file that takes the name of a registered task with another builder: the builder (where the
    task's code lives) is no part of a run's identity or a pool's key, so its runs and pools would pass for the
    registered task's (README.md, "Hash schemes")."""
    if config.name not in TASKS.names():
        return
    registered = load_task(config.name)
    if config.builder != registered.builder:
        raise ConfigError(
            f"task file {path!r} is named {config.name!r}, a registered task, but names the builder "
            f"{config.builder!r} instead of {registered.builder!r}: runs of both would share one identity; "
            "give the task a name of its own"
        )


def builder(config: TaskConfig) -> Callable[[TaskConfig], Task]:
    """The task's builder function, imported and checked (before any work)."""
    module_name, sep, attr = config.builder.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"task {config.name!r}: builder = {config.builder!r}: expected 'module:function'")
    if config._directory is not None and config._directory not in sys.path:
        sys.path.append(config._directory)  # after everything installed: a module beside the file never shadows
    try:
        build = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ConfigError(f"task {config.name!r}: builder {config.builder!r} cannot be imported: {e}") from None
    except AttributeError:
        raise ConfigError(f"task {config.name!r}: builder {config.builder!r}: module has no {attr!r}") from None
    if not callable(build):
        raise ConfigError(f"task {config.name!r}: builder {config.builder!r} is not a function")
    return build  # type: ignore[no-any-return]


def registered_builders() -> set[str]:
    """The builders of every registered task (built-in or installed through an entry point)."""
    return {load_task(name).builder for name in TASKS.names()}


def build_task(config: TaskConfig, trusted: bool = True) -> Task:
    """Build a task. A config that came from elsewhere (a stored run's config.json) is built only where its
    builder is that of a registered task, unless `trusted`: building imports and calls the builder's code."""
    if not trusted and config.builder not in registered_builders():
        raise ConfigError(
            f"task {config.name!r} names the builder {config.builder!r}, which no registered task uses; building it "
            "would run its code: pass --trust if you trust where this run came from"
        )
    build = builder(config)
    try:
        task = build(config)
    except ValidationError as e:
        raise ConfigError(one_line(f"task {config.name!r} params", e), validation_fields(e)) from None
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"task {config.name!r}: {e}") from None
    except TypeError as e:  # not a function of the task's config (e.g. `builtins:len`)
        raise ConfigError(
            f"task builder {config.builder!r} cannot build a task from its config ({e}): a builder takes the "
            "TaskConfig and returns a Task"
        ) from None
    if not isinstance(task, Task):
        raise ConfigError(f"task builder {config.builder!r} returned {type(task).__name__}, expected a Task")
    wanted = config.evaluation.train_prompts
    if wanted > len(task.train_prompts):
        raise ConfigError(
            f"evaluation.train_prompts = {wanted}, but task {config.name!r} has {len(task.train_prompts)} training "
            f"prompts (accepted: 0 to {len(task.train_prompts)})",
            ["evaluation.train_prompts"],
        )
    return task

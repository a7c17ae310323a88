"""A policy trained elsewhere (TRL, OpenRLHF, a paper's release), ranked on the same board as every method: its
checkpoint, or a file of its outputs (docs/external.md).

`-p model=DIR`: a transformers model directory, or a peft adapter directory over the task's reference model. It is
evaluated exactly like a trained run (harness.training.trained.TrainedPolicy): sampled outputs, proxy and gold
reward, win rate, `kl_mc` and `kl_k3` from its own log-probabilities, and on enumerable tasks every metric exactly.
Its weights are saved into the run (`policy/`), so that `harness evaluate` and `harness offtarget` read them as
they read a trained run's.

`-p outputs=FILE`: a JSON Lines file of its outputs (harness.outputs). Rewards and win rate as for any run;
`kl_mc` from the log-probabilities the file gives, against pi_ref's own log-probabilities of the same tokens, and
no KL where it gives none.

A run's identity holds the sha256 of the checkpoint's files (or of the file), not their path: a changed checkpoint
is a new run, the same checkpoint moved elsewhere the same run. `label` names the row on the board.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from harness import outputs, store
from harness.method import (
    CHECKSUM,
    METHODS,
    OPERATIONAL,
    AlignedPolicy,
    Method,
    MethodConfig,
    Outputs,
    RunContext,
    TrainingCost,
)
from harness.policy import Completions, Prompt
from harness.registry import NAME_PATTERN
from harness.task import ConfigError, Task
from harness.training.trained import TrainedPolicy, check_checkpoint, checkpoint_kind, load_checkpoint


def files_sha256(path: Path) -> str:
    """sha256 of a file, or of a checkpoint directory: of the name and sha256 of each file at its top level, in
    name order (not of hidden files, nor of subdirectories such as a trainer's checkpoint-N/)."""
    if path.is_file():
        return store.sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.name}\0{store.sha256(f)}\n".encode())
    return h.hexdigest()


def _where_wrong(field: str, path: Path) -> str | None:
    """What is wrong with `path` as the `model` or `outputs` setting, or None."""
    if field == "outputs":
        return None if path.is_file() else "not a file" if path.exists() else "no such file"
    try:
        checkpoint_kind(path)
    except ValueError as e:
        return str(e)
    return None


class ExternalConfig(MethodConfig):
    sha256: str = Field(
        "",
        pattern="^([0-9a-f]{64})?$",
        json_schema_extra=CHECKSUM,
        description="sha256 of the checkpoint's files or of the outputs file (computed when not given; checked "
        "before any work).",
    )
    label: str = Field(
        "",
        pattern=f"^({NAME_PATTERN})?$",
        description="Names the row on the board (letters, digits, _ . -); default: the first 12 hex digits of sha256.",
    )
    model: str | None = Field(
        None,
        json_schema_extra=OPERATIONAL,
        description="A transformers model directory, or a peft adapter directory over the task's reference model.",
    )
    outputs: str | None = Field(
        None,
        validate_default=True,
        json_schema_extra=OPERATIONAL,
        description="A JSON Lines file of the policy's outputs (prompt_id or prompt, completion; optionally tokens "
        "and logprob), e.g. from `harness export`.",
    )
    _verified: bool = PrivateAttr(False)  # sha256 was computed from the path in this process

    @field_validator("model", "outputs")
    @classmethod
    def _path(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An absolute path (recorded with the run) that exists, where the run's sha256 is to be computed from it."""
        field = info.field_name
        assert field is not None
        if field == "outputs" and "model" in info.data and (info.data["model"] is None) == (value is None):
            raise PydanticCustomError(
                "policy_source", "give the policy as -p model=DIR (a checkpoint) or as -p outputs=FILE (its outputs)"
            )
        if value is None:
            return None
        if not value:
            raise PydanticCustomError("path", "an empty path")
        path = Path(value).expanduser().absolute()
        wrong = _where_wrong(field, path) if not info.data.get("sha256") else None
        if wrong:
            raise PydanticCustomError("path", wrong)
        return str(path)

    @model_validator(mode="after")
    def _identity(self) -> ExternalConfig:
        if not self.sha256:
            self.sha256, self._verified = files_sha256(self.path()), True
        if not self.label:
            self.label = self.sha256[:12]
        return self

    def path(self) -> Path:
        return Path(self.model or self.outputs or "")

    def source(self) -> Path:
        """The checkpoint or outputs file, checked to be what the run's sha256 names (a ConfigError otherwise)."""
        field, path = ("model" if self.model is not None else "outputs"), self.path()
        wrong = _where_wrong(field, path)
        if wrong:
            raise ConfigError(f"{field} = {str(path)!r}: {wrong}", [field])
        if not self._verified:
            digest = files_sha256(path)
            if digest != self.sha256:
                raise ConfigError(
                    f"{field} = {str(path)!r} has sha256 {digest}, not the run's {self.sha256}: it has changed",
                    ["sha256"],
                )
            self._verified = True
        return path

    def check_task(self, task: Task) -> None:
        path = self.source()
        if self.model is not None:
            check_checkpoint(task, path)
        else:
            outputs.read(path, task)


class OutputsPolicy(AlignedPolicy):
    """Outputs read from a file, evaluated as they are (equal weights within each prompt); the log-probability of
    a completion is known only where the file gives it for that completion."""

    outputs_only = True

    def __init__(self, task: Task, read: outputs.OutputsFile):
        self.task, self.read = task, read
        self.known: dict[tuple[str, tuple[int, ...]], float] = {}
        if read.logprobs is not None:
            for p, row, logprobs in zip(task.prompts, read.completions.tokens, read.logprobs, strict=True):
                self.known.update({(p.id, t): float(lp) for t, lp in zip(row, logprobs, strict=True)})

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        raise NotImplementedError("a file of outputs cannot be sampled; its outputs are evaluated as they are")

    def pooled(self, seed: int, count: int) -> Outputs:
        task, c = self.task, self.read.completions
        return Outputs(
            completions=c,
            rewards=task.reward.score(task.prompts, c),
            gold=task.gold_reward.score(task.prompts, c) if task.gold_reward else None,
            weights=[np.full(len(row), 1.0 / len(row)) for row in c.tokens],
        )

    def sequence_logprobs(
        self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]
    ) -> list[np.ndarray] | None:
        found = [[self.known.get((p.id, tuple(t))) for t in row] for p, row in zip(prompts, tokens, strict=True)]
        if any(lp is None for row in found for lp in row):
            return None  # the file does not know the policy's probability of every completion asked for
        return [np.array(row, dtype=np.float64) for row in found]


@METHODS.register("external")
class External(Method[ExternalConfig]):
    """A policy trained elsewhere: its checkpoint (-p model=DIR) or a file of its outputs (-p outputs=FILE)."""

    Config = ExternalConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        cfg, task = self.config, ctx.task
        path = cfg.source()
        if cfg.outputs is not None:
            return OutputsPolicy(task, outputs.read(path, task))
        model = load_checkpoint(task, path)
        model.save_pretrained(ctx.out_dir / store.POLICY)  # the run keeps the weights it evaluated
        assert task.make_policy is not None  # check_checkpoint
        return TrainedPolicy(task.make_policy(model), TrainingCost())  # trained elsewhere: its cost is unknown here

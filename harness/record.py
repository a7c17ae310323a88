"""The results record of a run (results.json) and of a re-evaluation, typed. The store writes and reads every record
through `RunRecord`, so that a record missing a field, or holding a value of the wrong type, is refused where it is
written and reported where it is read. Field by field: docs/results.md."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Estimate(_Record):
    """One metric's value: the mean over prompts of the per-prompt values, with a bootstrap 95% interval."""

    id: str = Field(description="`<metric>@<version>` (harness.metrics).")
    mean: float
    se: float | None = Field(description="Standard error over prompts (None with one prompt).")
    ci95: tuple[float, float]
    n_prompts: int = Field(ge=1)


class TaskInfo(_Record):
    name: str
    version: int
    backend: str | None = Field(None, description="What sampled pi_ref: `hf`, `vllm`; None for a task's own policy.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="What the task's builder reports.")


class Cost(BaseModel):
    model_config = ConfigDict(extra="allow")  # records before timing.training_seconds kept it here

    samples_per_output: int = Field(ge=1)
    generated_tokens_per_output: float = Field(ge=0)
    training_steps: int = Field(ge=0)
    training_tokens: int = Field(ge=0)


class Provenance(_Record):
    """What the numbers were computed with, besides the run's identity; the last three are absent in runs written
    before they were recorded."""

    git_commit: str | None
    python: str
    libraries: dict[str, str | None] = Field(description="Versions of harness.provenance.LIBRARIES (None: absent).")
    threads: int | None = Field(None, ge=1, description="Torch's intra-op thread count while computing.")
    device: str | None = Field(None, description="Where the task's model computed: `cpu`, `cuda:0`, ...")
    cpu: str | None = Field(
        None, description="The CPU's model and the instruction set torch uses on it: `Intel(R) Xeon(R) ... (AVX512)`."
    )


class Timing(_Record):
    started_at: str
    wall_seconds: float = Field(ge=0)
    training_seconds: float = Field(0.0, ge=0, description="Accumulated over resumes.")


class Implementation(_Record):
    """Where the method's code came from; part of the run's identity."""

    module: str
    distribution: str | None = Field(description="The installed distribution that ships the module, if any.")
    version: str | None


class RunRecord(_Record):
    harness_version: str
    task: TaskInfo
    method: str
    config_hash: str
    seed: int
    metrics: dict[str, Estimate]
    bon_curve: list[dict[str, Estimate | int]] = Field(
        default_factory=list, description="Best-of-n at n = 1..M from the pool, for policies that have the curve."
    )
    cost: Cost
    provenance: Provenance
    timing: Timing
    implementation: Implementation | None = Field(None, description="The method's module, distribution and version.")
    evaluation: dict[str, Any] | None = Field(None, description="A re-evaluation's evaluation settings.")
    offtarget: dict[str, Any] | None = Field(
        None, description="Only in records written before off-target results became a record of their own."
    )

    def to_results(self) -> dict[str, Any]:
        """The record as results.json holds it (and as `harness.run` returns it): JSON types, and only the fields
        that were given, so that a record without an optional field is written without it."""
        return self.model_dump(mode="json", exclude_unset=True)


class LmEvalScores(_Record):
    weights: str = Field(description="Which weights lm-eval scored: the trained ones, or pi_ref's.")
    lm_eval_version: str
    results: dict[str, dict[str, float]] = Field(description="lm-eval task -> metric -> value (and `<metric>_stderr`).")


class OfftargetRecord(BaseModel):
    """A run's off-target results (offtarget.json, written by `harness offtarget`)."""

    model_config = ConfigDict(extra="allow")  # later versions may add what they measure

    settings: dict[str, Any] = Field(description="The lm-eval tasks and document limit they were measured with.")
    metrics: dict[str, Estimate] = Field(description="length, ppl_ref, distinct_n: means over prompts, with CIs.")
    notes: list[str] = Field(default_factory=list, description="What could not be computed, and why.")
    lm_eval: LmEvalScores | None = None


class RecordError(ValueError):
    """A results record that does not follow the schema."""


def checked(results: dict[str, Any], where: str) -> dict[str, Any]:
    """`results`, after checking it against the schema; RecordError names the first bad field."""
    return _validated(RunRecord, results, where, "a results record")


def checked_offtarget(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """`entry`, after checking it against the off-target schema; RecordError names the first bad field."""
    return _validated(OfftargetRecord, entry, where, "an off-target record")


def _validated(schema: type[BaseModel], obj: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    try:
        schema.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise RecordError(f"{where}: not {what}: {loc}: {err['msg']}") from None
    return obj

"""The contract every registered method keeps, checked the day it is registered (built-in or through an entry
point): its default config validates, `align` runs on `toy` with the smallest settings (a few training steps, small
pools), the stored record is a `RunRecord`, and every number in it is finite and within its metric's range (KL
>= 0, win rate in [0, 1]: harness.metrics.CATALOGUE). A method that breaks it fails here, as the deliberately
broken ones at the end show."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from harness import outputs, store
from harness.method import METHODS, AlignedPolicy, Method, Outputs, RunContext
from harness.metrics import CATALOGUE, TRAIN, preferred
from harness.policy import Completions, Prompt
from harness.record import RunRecord
from harness.registry import Registry
from harness.run import execute, resolve
from harness.task import build_task, load_task

EVALUATION = {"samples_per_prompt": 16, "reference_samples": 16, "pool_size": 8}  # per toy prompt
BUDGET = {"steps": 2, "train_pool_size": 8}  # a trained method's steps and training pool, where it has them
# Estimators whose one estimate may fall outside the quantity's range by chance: k1 averages log-ratios, which are
# negative for some samples. The KL a board reports (harness.metrics.preferred) must still be >= 0.
CHANCE = ("kl_mc", "kl_pool")


def inputs(method: str, folder: Path) -> dict[str, Any]:
    """The settings a method cannot default because the user gives them: `external`'s outputs file (here the toy
    reference policy's samples, as `harness export` writes them)."""
    if method != "external":
        return {}
    path = folder / "reference-outputs.jsonl"
    if not path.is_file():
        task = build_task(load_task("toy"))
        store.write_jsonl(path, outputs.export(task, None, EVALUATION["samples_per_prompt"], seed=0))
    return {"outputs": str(path)}


def violations(results: dict[str, Any]) -> list[str]:
    """What a run's results record breaks of the contract, one line each; none for a method that keeps it."""
    try:
        RunRecord.model_validate(results)
    except ValidationError as e:
        first = e.errors()[0]
        return [f"not a RunRecord: {'.'.join(map(str, first['loc']))}: {first['msg']}"]
    found = []
    estimates = [(name, m) for name, m in results["metrics"].items()]
    estimates += [
        (f"{name} (best-of-{p['n']})", m) for p in results["bon_curve"] for name, m in p.items() if name != "n"
    ]
    for where, m in estimates:
        name = where.split(" ")[0]
        numbers = [m["mean"], *m["ci95"], *([] if m["se"] is None else [m["se"]])]
        lo, hi = CATALOGUE[name].range if name in CATALOGUE else (-math.inf, math.inf)
        if not all(math.isfinite(x) for x in numbers):
            found.append(f"{where}: not finite (mean {m['mean']}, 95% CI {m['ci95']}, se {m['se']})")
        elif name.removesuffix(TRAIN) not in CHANCE and not lo <= m["mean"] <= hi:
            found.append(f"{where} = {m['mean']:.4f}, outside its range [{lo}, {hi}]")
    headline = preferred(results["metrics"], "kl")
    if headline is not None and headline[1]["mean"] < 0:
        found.append(f"the reported KL {headline[0]} = {headline[1]['mean']:.4f} is negative")
    return found


def contract_run(method: str, out: Path) -> dict[str, Any]:
    """The method's run on toy with the smallest settings, as `harness run` stores it (the record read back)."""
    fields = METHODS.get(method).Config.model_fields
    params = {k: v for k, v in BUDGET.items() if k in fields} | inputs(method, out)
    path = execute(resolve("toy", method, params, seed=0, evaluation=EVALUATION), out).path
    return store.read_run(path)[1]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("contract")  # one store: the methods share toy's pools


@pytest.mark.parametrize("method", METHODS.names())
def test_the_default_config_validates(method, out):
    """Every setting has a default, and the defaults validate together, toy's own (its `methods:` block) too; only
    what the user must give (`inputs`) is added."""
    config = METHODS.get(method).Config
    assert not [name for name, field in config.model_fields.items() if field.is_required()]
    config.model_validate(inputs(method, out))  # raises where the defaults contradict each other
    assert resolve("toy", method, inputs(method, out)).method_name == method


@pytest.mark.parametrize("method", METHODS.names())
def test_a_method_runs_on_toy_and_its_record_keeps_the_contract(method, out):
    results = contract_run(method, out)
    assert results["method"] == method
    assert not violations(results), "\n".join(violations(results))


# ---- the contract catches a broken method ------------------------------------------------------------------------


class Unnormalised(AlignedPolicy):
    """Best-of-n whose log-probabilities are off by log(scale): its probabilities sum to `scale` over the outputs
    (a bug of the kind a hand-written `sequence_logprobs` has, a normaliser forgotten). Monte Carlo metrics read its
    outputs and stay right; the exact ones read `sequence_logprobs`."""

    def __init__(self, inner: AlignedPolicy, scale: float):
        self.inner, self.shift = inner, float(np.log(scale))
        self.samples_per_output = inner.samples_per_output

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        return self.inner.generate(prompts, count, seed)

    def sequence_logprobs(
        self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]
    ) -> list[np.ndarray] | None:
        right = self.inner.sequence_logprobs(prompts, tokens)
        return None if right is None else [lp + self.shift for lp in right]

    def pooled(self, seed: int, count: int) -> Outputs | None:
        return self.inner.pooled(seed, count)

    def kl_terms(self, outputs: Outputs, ref_logprobs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        return self.inner.kl_terms(outputs, ref_logprobs)


def broken(scale: float) -> type[Method]:
    bon = METHODS.get("bon")

    class Broken(bon):  # type: ignore[misc, valid-type]
        def align(self, ctx: RunContext) -> AlignedPolicy:
            return Unnormalised(super().align(ctx), scale)

    return Broken


@pytest.mark.parametrize(
    ("scale", "caught"),
    [(0.25, "kl_exact"), (3.0, "win_rate_exact")],  # a KL below 0; a win rate above 1
)
def test_the_contract_catches_a_method_with_unnormalised_probabilities(scale, caught, out, monkeypatch):
    """A broken method, registered in a registry of its own in place of the built-in one, runs like any method and
    its record is a RunRecord; the contract names what is wrong with it. Its exact metrics are best-of-n's under
    probabilities s p(y) (s = `scale`): per prompt, KL = sum_y s p log(s p / p_ref) = s (KL_bon + log s), and the win
    rate and reward are s times best-of-n's."""
    right = contract_run("bon", out)["metrics"]
    registry: Registry[type[Method]] = Registry("method", "harness.contract-test")  # no entry points: this one only
    name = f"broken-x{scale:g}"  # a name of its own: one store holds every run of this module
    registry.register(name, broken(scale))
    monkeypatch.setattr("harness.run.METHODS", registry)
    monkeypatch.setattr(f"{__name__}.METHODS", registry)
    results = contract_run(name, out)
    wrong = results["metrics"]
    assert wrong["kl_exact"]["mean"] == pytest.approx(scale * (right["kl_exact"]["mean"] + math.log(scale)), rel=1e-9)
    for name in ("win_rate_exact", "reward_exact"):
        assert wrong[name]["mean"] == pytest.approx(scale * right[name]["mean"], rel=1e-9)
    found = violations(results)
    value = wrong[caught]["mean"]
    assert value < 0 if caught == "kl_exact" else value > 1
    assert f"{caught} = {value:.4f}, outside its range" in "\n".join(found), found
    print(f"\nbroken (scale {scale}):", *found, sep="\n  ")  # the failure text a broken method gets (pytest -s)

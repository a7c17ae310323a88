"""Golden runs: the identity of a run must change whenever its numbers do (docs/reproducibility.md).

For every registered method, a short deterministic run on `toy` whose results are stored in tests/golden/<method>.json
with the hash of the run's identity. While the identity is the same, the numbers must be the same: a change that
moves them fails here until the method's `version` is raised (one line in its module, which changes the identity)
and the golden file is written again:

    REGENERATE_GOLDEN=1 pytest tests/test_golden.py -k <method>

Writing again refuses a file whose numbers moved under an unchanged identity, so the version cannot be skipped. A
new method gets its golden file with the same command, committed with the method.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.method import METHODS
from harness.reproduce import EXACT, compare
from harness.run import RunSpec, execute, resolve

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
STEPS = 12  # training steps of a trained method's golden run: enough for every objective to move the policy
EVALUATION = {"samples_per_prompt": 32, "reference_samples": 32, "pool_size": 16}


def golden_spec(method: str) -> RunSpec:
    """The golden run of `method`: its toy defaults, a short training budget, small evaluation samples."""
    fields = METHODS.get(method).Config.model_fields
    params: dict[str, Any] = {"steps": STEPS} if "steps" in fields else {}
    params |= {"pool_size": 16} if "pool_size" in fields else {}
    return resolve("toy", method, params, seed=0, evaluation=EVALUATION)


def record(spec: RunSpec, results: dict[str, Any]) -> dict[str, Any]:
    """What a golden file holds: the identity's hash, the method's version and every number that a run reports."""
    return {
        "method": spec.method_name,
        "version": spec.method.version,
        "config_hash": spec.hash(),
        "results": {k: results[k] for k in ("metrics", "bon_curve", "cost")},
    }


def how_to_bump(method: str, spec: RunSpec) -> str:
    return (
        f"raise `version` of {method} to {spec.method.version + 1} ({spec.method.__module__}), then write the "
        "golden file again with "
        f"`REGENERATE_GOLDEN=1 pytest tests/test_golden.py -k {method}` (if every method moved, the change is in "
        "the task or the shared code: raise the task's version in tasks/toy.yaml, or each moved method's)"
    )


@pytest.mark.parametrize("method", METHODS.names())
def test_a_methods_numbers_change_only_with_its_identity(method, tmp_path):
    spec = golden_spec(method)
    now = record(spec, execute(spec, tmp_path).results)
    path = GOLDEN / f"{method}.json"
    stored = json.loads(path.read_text()) if path.is_file() else None
    regenerate = f"`REGENERATE_GOLDEN=1 pytest tests/test_golden.py -k {method}`"
    changed = [] if stored is None else [c for c in compare(stored["results"], now["results"], EXACT) if not c.ok]
    moved = [c for c in changed if c.comparable]  # the same quantities, other numbers
    if stored is not None and stored["config_hash"] == now["config_hash"] and moved:
        what = "; ".join(f"{c.quantity} {c.published} -> {c.reproduced} {c.note}".strip() for c in moved[:3])
        pytest.fail(f"the numbers of {method} moved under an unchanged identity ({what}): {how_to_bump(method, spec)}")
    if REGENERATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        return
    if stored is None:
        pytest.fail(f"no golden file for method {method!r}: write it with {regenerate} and commit it with the method")
    if stored["config_hash"] != now["config_hash"]:
        pytest.fail(
            f"the golden run of {method} has a new identity ({stored['config_hash']} -> {now['config_hash']}, "
            f"version {stored['version']} -> {now['version']}): write its golden file again with {regenerate}"
        )
    if changed:
        what = "; ".join(f"{c.quantity}: {c.note}" for c in changed[:3])
        pytest.fail(f"the golden run of {method} reports other quantities ({what}): write it again with {regenerate}")


def test_no_method_takes_a_hyperparameter_named_like_its_identity_keys():
    """`name` and `version` sit beside the hyperparameters in a config's method block."""
    for name in METHODS.names():
        assert not {"name", "version"} & set(METHODS.get(name).Config.model_fields), name

"""Golden runs: the identity of a run must change whenever its numbers do (docs/reproducibility.md).

For every registered method, a short deterministic run on `toy` whose results are stored in tests/golden/<method>.json
with the hash of the run's identity. While the identity is the same, the numbers must be the same: a change that
moves them fails here until the method's `version` is raised (one line in its module, which changes the identity)
and the golden file is written again:

    REGENERATE_GOLDEN=1 pytest tests/test_golden.py -k <method>

Writing again refuses a file whose numbers moved under an unchanged identity, so the version cannot be skipped. A
new method gets its golden file with the same command, committed with the method.

The golden runs compute in a child process on the AVX2 code paths of torch and MKL (`ISA`): on the CPU's own widest
ones (AVX-512 here) the kernels round differently, which moves a trained method's numbers by up to 0.4% (ppo's exact
KL), so golden files written on one x86-64 machine would fail on another. AVX2 is what every x86-64 CPU of the last
decade has, and MKL's conditional numerical reproducibility mode (MKL_CBWR) makes its results the same on all of them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from harness.method import METHODS
from harness.reproduce import EXACT, compare

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
STEPS = 12  # training steps of a trained method's golden run: enough for every objective to move the policy
EVALUATION = {"samples_per_prompt": 32, "reference_samples": 32, "pool_size": 16}
# Set before torch loads (hence the child process): the AVX2 kernels of torch, oneDNN and MKL, MKL in its
# reproducible mode for AVX2, one thread.
ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "1"}


def golden_records(methods: list[str]) -> dict[str, dict[str, Any]]:
    """The golden run of each method, as a golden file holds it: its identity's hash, the method's version and
    every number that the run reports (its toy defaults, a short training budget, small evaluation samples)."""
    from harness.run import execute, resolve

    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as store:
        for method in methods:
            fields = METHODS.get(method).Config.model_fields
            params: dict[str, Any] = {"steps": STEPS} if "steps" in fields else {}
            params |= {"train_pool_size": 16} if "train_pool_size" in fields else {}
            params |= {"outputs": str(reference_outputs(Path(store)))} if method == "external" else {}
            spec = resolve("toy", method, params, seed=0, evaluation=EVALUATION)
            results = execute(spec, Path(store)).results
            out[method] = {
                "method": method,
                "version": spec.method.version,
                "module": spec.method.__module__,
                "config_hash": spec.hash(),
                "results": {k: results[k] for k in ("metrics", "bon_curve", "cost")},
            }
    return out


def reference_outputs(folder: Path) -> Path:
    """An outputs file of the toy reference policy's samples (`harness export`): what `external` ranks in its
    golden run, since it trains nothing itself."""
    from harness import outputs, store
    from harness.task import build_task, load_task

    config = load_task("toy")
    path = folder / "reference-outputs.jsonl"
    store.write_jsonl(path, outputs.export(build_task(config), None, EVALUATION["samples_per_prompt"], seed=0))
    return path


@pytest.fixture(scope="session")
def golden_now(request) -> dict[str, dict[str, Any]]:
    """The golden runs of the methods whose tests were collected, in one child process on the AVX2 paths."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"golden files hold the numbers of x86-64 AVX2 kernels; this machine is {platform.machine()}")
    test = test_golden_numbers_change_only_with_the_identity.__name__
    methods = sorted({i.callspec.params["method"] for i in request.session.items if i.originalname == test})
    root = Path(__file__).parent.parent
    env = os.environ | ISA | {"BON_HARNESS_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_golden", *methods], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def how_to_bump(now: dict[str, Any]) -> str:
    return (
        f"raise `version` of {now['method']} to {now['version'] + 1} ({now['module']}), then write the golden file "
        f"again with `REGENERATE_GOLDEN=1 pytest tests/test_golden.py -k {now['method']}` (where every method "
        "moved, the change is in the task or in shared code: raise the task's version in tasks/toy.yaml, or the "
        "version of each method that moved)"
    )


@pytest.mark.parametrize("method", METHODS.names())
def test_golden_numbers_change_only_with_the_identity(method, golden_now):
    now = golden_now[method]
    path = GOLDEN / f"{method}.json"
    stored = json.loads(path.read_text()) if path.is_file() else None
    regenerate = f"`REGENERATE_GOLDEN=1 pytest tests/test_golden.py -k {method}`"
    changed = [] if stored is None else [c for c in compare(stored["results"], now["results"], EXACT) if not c.ok]
    moved = [c for c in changed if c.comparable]  # the same quantities, other numbers
    if stored is not None and stored["config_hash"] == now["config_hash"] and moved:
        what = "; ".join(f"{c.quantity} {c.published} -> {c.reproduced} {c.note}".strip() for c in moved[:3])
        pytest.fail(f"the numbers of {method} moved under an unchanged identity ({what}): {how_to_bump(now)}")
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


if __name__ == "__main__":  # the child process of `golden_now`
    print(json.dumps(golden_records(sys.argv[1:])))

"""Reproducible runs and boards (docs/reproducibility.md): a run's numbers do not depend on the thread count, its
identity follows its method's version, its provenance names what it was computed with, and `harness reproduce`
re-derives a published board's numbers. The golden runs are in test_golden.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import leaderboard, store
from harness.cli import app
from harness.identity import identity
from harness.method import METHODS
from harness.pool import PoolCache
from harness.provenance import LIBRARIES, constraints, pins
from harness.run import execute, resolve, spec_of, stored_spec
from harness.task import ConfigError

runner = CliRunner()
BOARDS = Path(__file__).parent.parent / "leaderboards"


def harness_run(out: Path, env: dict[str, str], *args: str) -> dict:
    """results.json of `harness run ARGS` in a child process with the environment updated by `env`."""
    environ = {k: v for k, v in os.environ.items() if k != "BON_HARNESS_THREADS"} | env
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", *args, "--out", str(out)], env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("*/*/*/results.json")
    return json.loads(path.read_text())


def test_a_training_run_gives_the_same_results_at_one_and_two_threads(tmp_path):
    """Unpinned, torch's default two threads move vbon's exact KL on toy in the sixth decimal after 20 steps (its
    LayerNorm gradients are summed in one buffer per thread)."""
    args = ("--method", "vbon", "--task", "toy", "-p", "steps=20")
    one = harness_run(tmp_path / "one", {"OMP_NUM_THREADS": "1"}, *args)
    two = harness_run(tmp_path / "two", {"OMP_NUM_THREADS": "2"}, *args)
    assert {k: v for k, v in one.items() if k != "timing"} == {k: v for k, v in two.items() if k != "timing"}
    assert one["provenance"]["threads"] == 1 and one["provenance"]["device"] == "cpu"


def test_another_thread_count_is_part_of_the_identity(monkeypatch):
    default = resolve("toy", "bon", {"n": 4})
    monkeypatch.setenv("BON_HARNESS_THREADS", "2")
    two = resolve("toy", "bon", {"n": 4})
    assert "threads" not in default.resolved() and two.resolved()["threads"] == 2
    assert two.hash() != default.hash()
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("BON_HARNESS_THREADS", bad)
        with pytest.raises(ConfigError, match="BON_HARNESS_THREADS"):
            resolve("toy", "bon", {"n": 4})


def test_pools_sampled_at_another_thread_count_are_kept_apart(toy, tmp_path):
    one, two = PoolCache(tmp_path).path(toy, 8, 0, "pool"), PoolCache(tmp_path, threads=2).path(toy, 8, 0, "pool")
    assert one != two and one == PoolCache(tmp_path, threads=1).path(toy, 8, 0, "pool")


def test_published_runs_keep_their_identities():
    """Version 1 and one thread stay out of the hash: every scheme-3 run of the published boards has the name
    that its config gives today, but for the runs stored before their training pool's `pool_size` was renamed
    `train_pool_size`: those are read under the new name, with the identity (and hash) of a run of today."""
    runs = [r for task in ("imdb", "aclsum") for r in store.read_jsonl(BOARDS / task / "results.jsonl")]
    # a run of an older version of its method than today's is a new run by design (its rows await recomputation)
    current = [r for r in runs if METHODS.get(r["config"]["method"]["name"]).version == version_of(r["config"])]
    assert len(current) > len(runs) / 2
    renamed = [r for r in current if "pool_size" in r["config"]["method"]]
    assert renamed and {r["results"]["method"] for r in renamed} <= {"bonbon", "bond", "dpo", "vbon"}
    for r in current:
        spec = spec_of(r["config"])
        if r in renamed:
            assert spec.config.train_pool_size == r["config"]["method"]["pool_size"]  # type: ignore[attr-defined]
            assert spec.hash() == store.config_hash(identity(r["config"])) != r["results"]["config_hash"]
        else:
            assert spec.hash() == r["results"]["config_hash"], r["results"]["method"]


def version_of(config: dict) -> int:
    return config["method"].get("version", 1)


def test_a_methods_version_from_2_on_is_part_of_the_identity(monkeypatch, tmp_path):
    bon = METHODS.get("bon")
    old = resolve("toy", "bon", {"n": 2})
    path, config = execute(old, tmp_path).path, old.resolved()
    monkeypatch.setattr(bon, "version", 2)
    new = resolve("toy", "bon", {"n": 2})
    assert new.resolved()["method"] == {"name": "bon", "version": 2, "n": 2} and config["method"] == {
        "name": "bon",
        "n": 2,
    }
    assert new.hash() != store.config_hash(identity(config))
    with pytest.raises(store.StoreError, match="version 1 of method 'bon', and version 2 is installed"):
        stored_spec(path)  # evaluate and offtarget refuse a run computed by the older code
    assert execute(new, tmp_path).reused is False


def test_provenance_names_every_library_the_thread_count_and_the_device(tmp_path):
    run = execute(resolve("toy", "bon", {"n": 2}), tmp_path)
    p = run.results["provenance"]
    assert set(p["libraries"]) == set(LIBRARIES)
    assert p["libraries"]["peft"] == version("peft") and p["libraries"]["vllm"] is None
    assert (p["threads"], p["device"]) == (1, "cpu") and p["cpu"]
    shown = runner.invoke(app, ["show", run.results["config_hash"], "--out", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    for word in ('"scikit-learn"', '"safetensors"', '"threads": 1', '"device": "cpu"'):
        assert word in shown.output


def test_the_constraints_file_pins_the_installed_versions():
    text = constraints()
    pinned = pins(text)
    for name in ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "numpy", "scipy"):
        assert pinned[name] == version(name).partition("+")[0], name
    assert pinned["scikit-learn"] == version("scikit-learn") and "bon-harness" not in pinned
    assert runner.invoke(app, ["constraints"]).output == text


@pytest.fixture
def board(tmp_path):
    """A published toy board of two cells (best-of-2, and vbon trained for 10 steps), under a constraints file."""
    out, dest = tmp_path / "runs", tmp_path / "boards"
    execute(resolve("toy", "bon", {"n": 2}), out)
    execute(resolve("toy", "vbon", {"n": 2, "steps": 10}), out)
    dest.mkdir()
    (dest / "constraints.txt").write_text(constraints())
    leaderboard.publish(out, "toy", dest)
    return dest


def reproduce(dest: Path, *args: str):
    return runner.invoke(app, ["reproduce", "--task", "toy", "--dest", str(dest), *args])


def test_reproduce_gives_identical_numbers_and_fails_on_a_changed_one(board):
    done = reproduce(board)
    assert done.exit_code == 0, done.output
    assert "2 cells: 2 identical, 0 within tolerance, 0 differ" in done.output
    assert "differs" not in done.output and "bon_curve reward" in done.output
    path = board / "toy" / "results.jsonl"
    runs = store.read_jsonl(path)
    vbon = next(r for r in runs if r["results"]["method"] == "vbon")
    vbon["results"]["metrics"]["kl_exact"]["mean"] *= 1 + 1e-9
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    done = reproduce(board, "--method", "vbon")
    assert done.exit_code == 1, done.output
    assert "1 cells: 0 identical, 0 within tolerance, 1 differ" in done.output and "differs" in done.output
    done = reproduce(board, "--method", "vbon", "--rtol", "1e-6")
    assert done.exit_code == 0 and "0 identical, 1 within tolerance" in done.output, done.output
    done = reproduce(board, "--config-hash", "0000")
    assert done.exit_code == 2 and "no published run of task 'toy'" in done.output


def test_a_standard_error_is_compared_on_its_metric_s_scale():
    """An exact quantity's se is rounding (0 on one CPU, 7e-18 on another, as imdb's kl_bon_beirami): within any
    relative tolerance of its metric; a moved mean is not."""
    from harness.reproduce import Tolerance, compare

    def record(mean: float, se: float) -> dict:
        summary = {"id": "kl_bon_beirami@1", "mean": mean, "se": se, "ci95": [mean, mean], "n_prompts": 32}
        return {"metrics": {"kl_bon_beirami": summary}, "cost": {"samples_per_output": 8}}

    published = record(1.7747168677688827, 0.0)
    assert [c.ok for c in compare(published, record(1.7747168677688827, 7.05e-18))][0] is False  # exact by default
    assert all(c.ok for c in compare(published, record(1.7747168677688827, 7.05e-18), Tolerance(rtol=1e-12)))
    assert not compare(published, record(1.7747168677688827 * (1 + 1e-9), 0.0), Tolerance(rtol=1e-12))[0].ok
    assert not compare(published, record(1.7747168677688827, 1e-3), Tolerance(rtol=1e-6))[0].ok


def test_reproduce_calls_a_row_of_an_older_method_version_stale(board, monkeypatch):
    monkeypatch.setattr(METHODS.get("bon"), "version", 2)
    done = reproduce(board, "--method", "bon")
    assert done.exit_code == 1 and "stale" in done.output, done.output


def test_a_board_records_its_constraints_file_and_the_runs_that_disagree(board, tmp_path):
    recorded = json.loads((board / "toy" / "provenance.json").read_text())
    digest = hashlib.sha256((board / "constraints.txt").read_bytes()).hexdigest()
    assert recorded == {"constraints": "../constraints.txt", "sha256": digest, "disagreements": []}
    assert (
        f"(sha256 `{digest[:16]}`): every run's recorded library versions agree"
        in (board / "toy" / "leaderboard.md").read_text()
    )
    old = tmp_path / "old.txt"
    old.write_text("torch==2.4.0\nnumpy==1.26.0\n")
    leaderboard.publish(tmp_path / "runs", "toy", board, constraints=old)
    recorded = json.loads((board / "toy" / "provenance.json").read_text())
    assert {(d["library"], d["pinned"]) for d in recorded["disagreements"]} == {("torch", "2.4.0"), ("numpy", "1.26.0")}
    assert "2 runs recorded other library versions" in (board / "toy" / "leaderboard.md").read_text()

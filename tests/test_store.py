"""The store never loses a run: publishing, names and paths, killed writers, concurrent writers, corrupted files,
honest records and the trust boundary, each on the toy task."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import store
from tests.conftest import interruptible, one_error_line, toy_yaml


def runs_in(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/*/*/results.json"))


def leftovers(out: Path) -> list[Path]:
    return sorted(out.glob("**/.*.partial-*")) + sorted(out.glob("**/.*.old-*"))


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# ---- 1. publishing never deletes what it did not write ----------------------------------------------------------


def test_publishing_into_the_store_is_refused_and_deletes_nothing(invoke, toy_run, tmp_path):
    out = tmp_path / "S"
    toy_run(out)
    before = snapshot(out)
    line = one_error_line(invoke("leaderboard", "publish", "--task", "toy", "--out", str(out), "--dest", str(out)))
    assert "overlaps the results store" in line
    assert snapshot(out) == before


def test_publishing_replaces_only_a_previous_publication(invoke, toy_run, tmp_path):
    out, dest = tmp_path / "runs", tmp_path / "boards"
    toy_run(out)
    (dest / "toy").mkdir(parents=True)
    (dest / "toy" / "notes.txt").write_text("mine")
    line = one_error_line(invoke("leaderboard", "publish", "--task", "toy", "--out", str(out), "--dest", str(dest)))
    assert "notes.txt" in line and "choose another --dest" in line
    assert (dest / "toy" / "notes.txt").read_text() == "mine"
    (dest / "toy" / "notes.txt").unlink()
    for _ in range(2):  # a publication replaces the previous one
        assert invoke("leaderboard", "publish", "--task", "toy", "--out", str(out), "--dest", str(dest)).exit_code == 0
    assert (dest / "toy" / store.PUBLISHED_MARK).is_file()
    assert not leftovers(dest)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_error_line(invoke("leaderboard", "publish", "--task", "toy", "--out", str(out), "--dest", str(blocker)))
    assert "is a file" in line


def test_concurrent_publishes_of_one_task_both_finish_cleanly(toy_run, tmp_path):
    out, dest = tmp_path / "runs", tmp_path / "boards"
    toy_run(out)
    cmd = [sys.executable, "-m", "harness", "leaderboard", "publish", "--task", "toy", "--out", str(out)]
    procs = [subprocess.Popen([*cmd, "--dest", str(dest)], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    assert sorted(p.name for p in dest.iterdir()) == ["index.html", "toy"]  # the journal of staging went with them
    assert not leftovers(dest)


# ---- 2. names are checked at the edge ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../runs/toy", "../../escaped", "a/b", "", ".", "..", ".hidden", "$\\undefinedmacro$"]
)
def test_a_task_name_that_is_no_safe_directory_name_is_refused(invoke, toy_run, tmp_path, name):
    out = tmp_path / "runs"
    toy_run(out)
    before = snapshot(out)
    path = toy_yaml(tmp_path / "task.yaml", name)
    line = one_error_line(invoke("run", "--method", "bon", "--task", str(path), "--out", str(out)))
    assert "name" in line
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "task.yaml"]


def test_store_paths_stay_inside_the_store(tmp_path):
    with pytest.raises(store.StoreError):
        store.run_path(tmp_path, "toy", "bon", "../../x")
    with pytest.raises(ValueError, match="invalid task name"):
        store.pool_dir(tmp_path, "..", "abc")


# ---- 3. evaluate outside a store --------------------------------------------------------------------------------


def test_evaluating_a_run_directory_outside_a_store_is_one_line(invoke, toy_run, tmp_path):
    run = toy_run(tmp_path / "runs")
    for copy in (tmp_path / "elsewhere" / run.name, tmp_path / "a" / "b" / "c" / run.name):
        shutil.copytree(run, copy)
        line = one_error_line(invoke("evaluate", str(copy)))
        assert "not a run in a results store" in line
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.glob("**/.pools")) == [Path("runs/.pools")]
    assert "no run" in one_error_line(invoke("evaluate", str(Path("/") / run.name)))


# ---- 4. a killed writer leaves nothing behind for long ----------------------------------------------------------

BLOCKING_BUILDER = """
import time
from pathlib import Path

from harness.task import build_task

def build(config):
    params = dict(config.params)
    ready = Path(params.pop("ready"))
    task = build_task(config.model_copy(update={"builder": "harness.tasks.toy:build", "params": params}))
    ready.touch()
    while True:
        time.sleep(0.05)
"""


def blocked_run(tmp_path: Path, out: Path) -> subprocess.Popen:
    """A toy run that blocks, staged, until it is killed."""
    (tmp_path / "blocking_task.py").write_text(BLOCKING_BUILDER)
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    path = toy_yaml(tmp_path / "task.yaml", "toy-blocking", builder="blocking_task:build", params={"ready": str(ready)})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--method", "bon", "--task", str(path), "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=interruptible,
    )
    deadline = time.time() + 120
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None
    return proc


def test_kill_9_leaves_a_staging_directory_that_the_next_use_removes(invoke, toy_run, tmp_path):
    out = tmp_path / "runs"
    proc = blocked_run(tmp_path, out)
    assert leftovers(out), "the blocked run is staged"
    live = invoke("gc", "--out", str(out))  # the writer is alive: its staging directory stays
    assert live.exit_code == 0 and leftovers(out)
    proc.kill()
    proc.wait()
    assert leftovers(out)
    toy_run(out)
    assert not leftovers(out)


def test_two_identical_runs_at_once_both_succeed_with_one_run_stored(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness", "run", "--method", "dpo", "--task", "toy", "--out", str(out)]
    cmd += ["-p", "steps=6", "-p", "checkpoint_every=1", "--samples", "16"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read() if p.stderr else ""
    assert len(runs_in(out)) == 1
    assert not leftovers(out) and not list(out.glob(".checkpoints/*/*/*/*"))


# ---- 6, 7. corrupted files are reported, never read as if right -------------------------------------------------


def test_an_edited_pool_is_reported_and_gc_removes_it(invoke, toy_run, tmp_path):
    out = tmp_path / "runs"
    first = json.loads((toy_run(out) / "results.json").read_text())
    pool = next(out.glob(".pools/toy/*/pool.jsonl"))
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    pool.write_text("".join(json.dumps(r | {"reward": -r["reward"]}) + "\n" for r in rows))
    line = one_error_line(invoke("run", "--method", "bon", "--task", "toy", "--n", "3", "--out", str(out)))
    assert str(pool) in line and "checksum" in line and "harness gc" in line
    assert len(runs_in(out)) == 1
    cleaned = invoke("gc", "--out", str(out))
    assert cleaned.exit_code == 0 and "corrupted reference pool" in cleaned.output
    again = json.loads((toy_run(out, "--force") / "results.json").read_text())
    assert again["metrics"] == first["metrics"]


def test_a_truncated_results_file_breaks_only_its_own_run(invoke, toy_run, tmp_path, caplog):
    out = tmp_path / "runs"
    good = toy_run(out)
    assert invoke("run", "--method", "bon", "--task", "toy", "--n", "3", "--out", str(out)).exit_code == 0
    bad = next(p for p in runs_in(out) if p != good)
    (bad / "results.json").write_text((bad / "results.json").read_text()[:100])
    listing = invoke("ls", "runs", "--out", str(out))
    assert listing.exit_code == 0 and listing.output.count("│ toy") == 1
    assert f"skipping a broken run: {bad / 'results.json'}" in caplog.text
    assert invoke("show", good.name, "--out", str(out)).exit_code == 0
    line = one_error_line(invoke("show", bad.name, "--out", str(out)))
    assert "results.json" in line and "--force" in line
    board = invoke("leaderboard", "build", "--task", "toy", "--out", str(out))
    assert board.exit_code == 0 and "bon" in board.output
    line = one_error_line(invoke("run", "--method", "bon", "--task", "toy", "--n", "3", "--out", str(out)))
    assert "--force" in line
    assert invoke("run", "--method", "bon", "--task", "toy", "--n", "3", "--out", str(out), "--force").exit_code == 0
    assert invoke("gc", "--out", str(out)).output.strip().endswith("0 broken runs")


def _killed_training(out: Path, *args: str) -> dict:
    """Train until the second checkpoint, then kill -9; returns the last checkpoint's state."""
    import torch

    cmd = [sys.executable, "-m", "harness", "run", "--method", "dpo", "--task", "toy", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob(".checkpoints/toy/dpo/*/checkpoint-*.pt"))
        if found:
            state = torch.load(found[0], weights_only=True)
            if state["step"] >= 3:
                break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return state


TRAIN = ("-p", "steps=40", "-p", "checkpoint_every=2", "--samples", "16")


def test_a_corrupted_checkpoint_is_one_line_and_force_clears_it(invoke, tmp_path):
    out = tmp_path / "runs"
    _killed_training(out, *TRAIN)
    ckpt = next(out.glob(".checkpoints/toy/dpo/*/checkpoint-*.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    line = one_error_line(invoke("run", "--method", "dpo", "--task", "toy", "--out", str(out), *TRAIN))
    assert str(ckpt) in line and "--force" in line
    assert invoke("run", "--method", "dpo", "--task", "toy", "--out", str(out), *TRAIN, "--force").exit_code == 0
    assert len(runs_in(out)) == 1


# ---- 8. honest records ------------------------------------------------------------------------------------------


def test_training_time_accumulates_across_a_resume_and_same_seed_runs_are_identical(invoke, tmp_path):
    state = _killed_training(tmp_path / "a", *TRAIN)
    assert invoke("run", "--method", "dpo", "--task", "toy", "--out", str(tmp_path / "a"), *TRAIN).exit_code == 0
    assert invoke("run", "--method", "dpo", "--task", "toy", "--out", str(tmp_path / "b"), *TRAIN).exit_code == 0
    (a,), (b,) = runs_in(tmp_path / "a"), runs_in(tmp_path / "b")
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    assert ra["timing"]["training_seconds"] > state["seconds"] > 0
    assert "training_seconds" not in ra["cost"]
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb  # resumed or not, the same seed gives the same results.json apart from its timing
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()


def test_a_sweep_with_a_broken_task_builder_still_runs_its_valid_cells(invoke, tmp_path):
    """A builder that fails while building fails its own cells only."""
    (tmp_path / "failing_task.py").write_text("def build(config):\n    raise ValueError('no data here')\n")
    toy_yaml(tmp_path / "task.yaml", "toy-failing", builder="failing_task:build")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"tasks: [toy, {tmp_path / 'task.yaml'}]\nmethods:\n  bon: {{n: 2}}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        result = invoke("sweep", str(sweep), "--out", str(tmp_path / "runs"))
    finally:
        sys.path.remove(str(tmp_path))
    assert result.exit_code == 1
    assert "1 cells run, 0 already finished, 1 failed" in result.output
    assert "no data here" in result.output
    assert [p.parent.parent.name for p in runs_in(tmp_path / "runs")] == ["toy"]


# ---- trust boundary and permissions ------------------------------------------------------------------------------


def test_evaluate_builds_only_registered_builders_unless_trusted(invoke, toy_run, tmp_path):
    run = toy_run(tmp_path / "runs")
    (tmp_path / "toy_again.py").write_text("from harness.tasks.toy import build\n")
    config = json.loads((run / "config.json").read_text())
    config["task"]["builder"] = "toy_again:build"
    (run / "config.json").write_text(json.dumps(config))
    store.seal(run)  # as a store received from someone else would be: consistent, but foreign code
    line = one_error_line(invoke("evaluate", str(run), "--samples", "8"))
    assert "toy_again:build" in line and "--trust" in line
    sys.path.insert(0, str(tmp_path))
    try:
        assert invoke("evaluate", str(run), "--samples", "8", "--trust").exit_code == 0
    finally:
        sys.path.remove(str(tmp_path))


def test_created_directories_follow_the_umask(invoke, toy_run, tmp_path):
    run = toy_run(tmp_path / "runs")
    assert invoke("leaderboard", "publish", "--task", "toy", "--out", str(tmp_path / "runs"), "--dest",
                  str(tmp_path / "boards")).exit_code == 0  # fmt: skip
    expected = 0o777 & ~store.UMASK
    for path in (run, tmp_path / "boards" / "toy", next((tmp_path / "runs" / ".pools" / "toy").iterdir())):
        assert path.stat().st_mode & 0o777 == expected, path
    assert (run / "results.json").stat().st_mode & 0o777 == 0o666 & ~store.UMASK


# ---- the chaos test: kill -9 at random moments, then resume -----------------------------------------------------

CHAOS_ROUNDS = int(os.environ.get("HARNESS_CHAOS_ROUNDS", "2"))
CHAOS_TRAIN = ("run", "--method", "dpo", "--task", "toy", "-p", "steps=8", "-p", "checkpoint_every=1")
CHAOS_SWEEP = """tasks: [toy]
evaluation: {samples_per_prompt: 16}
methods:
  bon: {n: [1, 2]}
  dpo: {steps: 4, checkpoint_every: 1}
"""


def _records(out: Path) -> dict[str, tuple[dict, bytes]]:
    """Every run of a store: its results.json without timing, and its samples."""
    found = {}
    for path in runs_in(out):
        results = json.loads((path / "results.json").read_text())
        results.pop("timing")
        found[str(path.relative_to(out))] = (results, (path / "samples.jsonl").read_bytes())
    return found


@pytest.mark.parametrize("job", ["training run", "sweep"])
def test_chaos_kill_9_at_random_moments_then_resume(tmp_path, job):
    """Each round starts the job in a fresh store, kills it with SIGKILL at a random moment of its run (from
    start-up to the end of an uninterrupted run), starts it again, kills that one at another random moment,
    then lets it finish: the store must hold exactly the runs of an uninterrupted job, identical apart from
    their timing, and nothing else."""
    import random

    (tmp_path / "sweep.yaml").write_text(CHAOS_SWEEP)
    args = [*CHAOS_TRAIN, "--samples", "16"] if job == "training run" else ["sweep", str(tmp_path / "sweep.yaml")]
    cmd = [sys.executable, "-m", "harness", *args]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--out", str(tmp_path / "reference")], check=True, capture_output=True)
    duration = time.perf_counter() - t0
    expected = _records(tmp_path / "reference")
    rng = random.Random(0)
    for r in range(CHAOS_ROUNDS):
        out = tmp_path / f"chaos-{r}"
        for _ in range(2):
            proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=rng.uniform(0.1, 1.0) * duration)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
        assert _records(out) == expected, f"round {r}"
        assert not leftovers(out), f"round {r}"
        assert not list(out.glob(".checkpoints/*/*/*/*")), f"round {r}"
        shutil.rmtree(out)


def test_a_config_of_an_earlier_hash_scheme_is_refused_in_one_line(invoke, toy_run, tmp_path):
    """Schemes 1 and 2 are no longer read: a store holding such a run gets one line naming the scheme, exit 2."""
    run = toy_run(tmp_path / "runs")
    config = json.loads((run / store.CONFIG).read_text())
    (run / store.CONFIG).write_text(json.dumps(config | {"hash_scheme": 2}))
    store.seal(run)  # as that store wrote it, its checksums agreeing
    done = invoke("leaderboard", "build", "--task", "toy", "--out", str(tmp_path / "runs"))
    assert done.exit_code == 2
    assert "a config.json of hash scheme 2: this harness reads scheme 3 only" in one_error_line(done)

"""Sweeps: validation before any cell starts, resumption after a kill, the Ray executor."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import store
from harness.sweep import SweepError, grid, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def test_grid_is_the_product_of_list_valued_entries():
    assert grid({"n": [1, 2], "beta": [0.5, 1.0], "steps": 5}) == [
        {"n": 1, "beta": 0.5, "steps": 5},
        {"n": 1, "beta": 1.0, "steps": 5},
        {"n": 2, "beta": 0.5, "steps": 5},
        {"n": 2, "beta": 1.0, "steps": 5},
    ]
    assert grid({}) == [{}]


def test_cells_cover_tasks_methods_blocks_and_seeds(tmp_path):
    sweep = load(
        write(
            tmp_path,
            "tasks: [toy]\nseeds: [0, 1]\nmethods:\n  bon: {n: [1, 2, 4]}\n  vbon:\n"
            "    - {variant: exact, n: [2, 4]}\n    - {variant: l1, n: 4}\n",
        )
    )
    assert len(sweep.cells) == (3 + 2 + 1) * 2
    assert {(c.method, tuple(sorted(c.params.items())), c.seed) for c in sweep.cells} >= {
        ("bon", (("n", 4),), 1),
        ("vbon", (("n", 4), ("variant", "l1")), 0),
    }


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("tasks: [toy]\nseed: [0]\nmethods:\n  bon: {n: 2}\n", 2, "unknown key 'seed'; accepted: tasks, seeds"),
        ("tasks: [toy]\nmethods:\n  bon: {n: 2}\n  vbonn: {n: 2}\n", 4, "unknown method 'vbonn'; did you mean 'vbon'"),
        ("tasks: [toy, imbd]\nmethods:\n  bon: {n: 2}\n", 1, "unknown task 'imbd'; did you mean 'imdb'"),
        (
            "tasks: [toy]\nmethods:\n  bon: {n: 2}\n  ppo:\n    - {beta: 1.0}\n    - {beta: [1.0, -1]}\n",
            6,
            "invalid ppo config: beta = -1: Input should be greater than 0",
        ),
        ("tasks: [toy]\nmethods:\n  dpo:\n    steps: 10\n    lr: 0\n", 5, "lr = 0: Input should be greater than 0"),
        ("tasks: [toy]\nevaluation:\n  samples: 3\nmethods:\n  bon: {n: 2}\n", 3, "samples = 3: Extra inputs"),
        ("tasks: [toy]\nresources: {gpus: 1}\nmethods:\n  bon: {n: 2}\n", 2, "unknown key 'resources.gpus'"),
        ("tasks: [toy]\nseeds: 3\nmethods:\n  bon: {n: 2}\n", 2, "seeds = 3: Input should be a valid list"),
    ],
)
def test_a_bad_sweep_file_fails_before_any_cell_naming_the_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(SweepError, match=rf"^{path}:{line}: .*") as e:
        load(path)
    assert message in str(e.value)
    proc = harness("sweep", str(path), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and f"{path}:{line}:" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing started


def test_off_a_terminal_every_finished_cell_prints_one_line(tmp_path):
    path, out = write(tmp_path, "tasks: [toy]\nmethods:\n  bon: {n: [1, 2]}\n"), str(tmp_path / "runs")
    metrics = r"reward -?\d+\.\d{4} \(exact\), win_rate \d\.\d{4} \(exact\), kl \d\.\d{4} \(exact\)"
    first = harness("sweep", str(path), "--out", out)  # stdout is a pipe here, as in CI
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 2, first.stdout
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"\[{i + 1}/2\] toy bon n={i + 1} seed 0: \d+\.\d s, {metrics}", line), line
    again = harness("sweep", str(path), "--out", out)
    assert [line for line in again.stdout.splitlines() if line.startswith("[")] == [
        re.sub(r"\d+\.\d s,", "reused,", line) for line in lines
    ]


SWEEP = "tasks: [toy]\nseeds: [0]\nmethods:\n  ppo:\n    beta: [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]\n    steps: 25\n"


def _summary(stdout: str) -> tuple[int, int, int]:
    line = next(x for x in stdout.splitlines() if "cells run" in x)
    run, reused, failed = (int(w) for w in line.replace(",", "").split() if w.isdigit())
    return run, reused, failed


def test_a_killed_sweep_finishes_only_the_missing_cells(tmp_path):
    path, out = write(tmp_path, SWEEP), tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", str(path), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(store.list_runs(out)) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name for p in store.list_runs(out)}
    assert 2 <= len(finished) < 6
    again = harness("sweep", str(path), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert _summary(again.stdout) == (6 - len(finished), len(finished), 0)
    assert len(store.list_runs(out)) == 6
    assert _summary(harness("sweep", str(path), "--out", str(out)).stdout) == (0, 6, 0)


def test_the_ray_executor_runs_cells_as_ray_tasks_with_the_same_results(tmp_path):
    pytest.importorskip("ray")
    path = write(tmp_path, "tasks: [toy]\nseeds: [0, 1]\nmethods:\n  bon: {n: [2, 8]}\n")
    local = harness("sweep", str(path), "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    on_ray = harness("sweep", str(path), "--executor", "ray", "--out", str(tmp_path / "ray"))
    assert on_ray.returncode == 0, on_ray.stderr
    assert _summary(on_ray.stdout) == (4, 0, 0)
    a, b = store.list_runs(tmp_path / "local"), store.list_runs(tmp_path / "ray")
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 4
    for x, y in zip(a, b, strict=True):
        assert (
            json.loads((x / "results.json").read_text())["metrics"]
            == json.loads((y / "results.json").read_text())["metrics"]
        )


def test_sigterm_stops_a_ray_sweep_as_ctrl_c_does(tmp_path):
    """Ray installs its own SIGTERM handler, which dumps a crash report; the sweep keeps the harness's: one line
    saying what is left, exit status 130, and a second run finishes the rest."""
    pytest.importorskip("ray")
    path = write(tmp_path, "tasks: [toy]\nseeds: [0, 1, 2]\nmethods:\n  ppo: {steps: 60}\n")
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", str(path), "--executor", "ray", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not store.list_runs(out) and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted;" in stderr and "SIGTERM received" not in stderr, stderr
    again = harness("sweep", str(path), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert len(store.list_runs(out)) == 3

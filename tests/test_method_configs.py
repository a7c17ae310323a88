"""Every cross-field rule of a method's config is checked at the edge: `harness run` and sweep validation reject a
bad combination in one line, before any work, and nothing is created in the store."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app

BAD = [
    ("bonbon", {"n": 16, "pool_size": 8}, "n = 16 exceeds pool_size = 8"),
    ("bonbon", {"target": "ties", "pair": "logistic"}, "needs pair = 'ipo'"),
    ("bond", {"n": 16, "pool_size": 8}, "n = 16 exceeds pool_size = 8"),
    ("bond", {"steps": 10, "iterations": 3}, "multiple of iterations"),
]


@pytest.mark.parametrize(("method", "params", "message"), BAD)
def test_a_bad_combination_is_one_line_before_any_work(tmp_path, method, params, message):
    out = tmp_path / "runs"
    args = ["run", "--method", method, "--task", "toy", "--out", str(out)]
    for key, value in params.items():
        args += ["-p", f"{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert not out.exists() or not list(out.glob("toy/*"))


@pytest.mark.parametrize(("method", "params", "message"), BAD)
def test_the_same_combination_in_a_sweep_file_fails_its_validation(tmp_path, method, params, message):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"tasks": ["toy"], "methods": {"bon": {"n": 2}, method: params}}))
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--out", str(out)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line and str(sweep) in line
    assert not out.exists() or not list(out.glob("toy/*"))  # not even the valid bon cell ran

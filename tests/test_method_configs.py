"""Every cross-field rule of a method's config is checked at the edge: `harness run` and sweep validation reject a
bad combination in one line, before any work, and nothing is created in the store."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app

BAD = [
    ("bonbon", {"n": 16, "train_pool_size": 8}, "n = 16 exceeds train_pool_size = 8"),
    ("bonbon", {"target": "ties", "pair": "logistic"}, "needs pair = 'ipo'"),
    ("bond", {"n": 16, "train_pool_size": 8}, "n = 16 exceeds train_pool_size = 8"),
    ("bond", {"steps": 10, "iterations": 3}, "multiple of iterations"),
    # the training pool's old name is refused with the new one, never read silently
    ("dpo", {"pool_size": 16}, "pool_size = 16: pool_size is now train_pool_size (the training pool; --pool-size"),
    ("vbon", {"pool_size": 16}, "give train_pool_size instead"),
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


def test_a_setting_the_built_task_cannot_take_is_one_line_before_any_work(tmp_path):
    """A LoRA rank above the model's narrowest linear layer (toy's GPT-2: 16) is known only once the task is
    built; it still fails in one line naming the field, before any sampling, and leaves no run, staged or
    finished, in the store."""
    out = tmp_path / "runs"
    args = ["run", "--method", "ppo", "--task", "toy", "--out", str(out), "-p", "lora_rank=17"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "lora_rank = 17 exceeds 16" in line and "accepted: 0" in line
    assert not [p for p in out.rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_the_widest_lora_rank_the_model_takes_is_accepted(toy):
    from harness.methods.ppo import PPOMethodConfig
    from harness.training.config import lora_width

    assert lora_width(toy.model) == 16
    PPOMethodConfig(lora_rank=16).check_task(toy)  # the narrowest side itself is still accepted


def test_an_exact_cdf_on_a_task_that_does_not_enumerate_is_one_line(tiny_aclsum, tmp_path):
    from harness.methods.vbon import VBoNConfig
    from harness.task import ConfigError, build_task

    task = build_task(tiny_aclsum(tmp_path, "aclsum-cdf"))
    with pytest.raises(ConfigError, match="cdf = 'exact' needs an enumerable task"):
        VBoNConfig(cdf="exact").check_task(task)

"""The shared reference pool: cached once, reused without sampling, identical on reload."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from harness.cli import app
from harness.pool import PoolCache


def test_second_use_samples_nothing_and_reloads_identically(toy, tmp_path):
    first = PoolCache(tmp_path)
    a = first.get(toy, 16, seed=0)
    assert first.sampled == 16 * len(toy.prompts)
    second = PoolCache(tmp_path)
    b = second.get(toy, 16, seed=0)
    assert second.sampled == 0
    assert a.completions.tokens == b.completions.tokens
    assert a.completions.text == b.completions.text
    for x, y in zip(a.rewards, b.rewards, strict=True):
        np.testing.assert_array_equal(x, y)
    for rx, ry in zip(a.completions.ref_token_logprobs, b.completions.ref_token_logprobs, strict=True):
        for x, y in zip(rx, ry, strict=True):
            np.testing.assert_array_equal(x, y)


def test_pools_differ_by_seed_stream_and_size(toy, tmp_path):
    cache = PoolCache(tmp_path)
    base = cache.get(toy, 16, seed=0).completions.tokens
    assert cache.get(toy, 16, seed=1).completions.tokens != base
    assert cache.get(toy, 16, seed=0, stream="held-out").completions.tokens != base
    assert len(cache.get(toy, 8, seed=0).completions.tokens[0]) == 8
    assert len({p.parent for p in tmp_path.glob(".pools/toy/*/pool.jsonl")}) == 4


def test_pool_build_then_run_samples_nothing_more(tmp_path):
    runner = CliRunner()
    built = runner.invoke(app, ["pool", "build", "--task", "toy", "--m", "32", "--out", str(tmp_path)])
    assert built.exit_code == 0, built.output
    assert "sampled 2304 completions" in built.output  # 8 prompts x (32 pooled + 256 held-out)
    again = runner.invoke(app, ["pool", "build", "--task", "toy", "--m", "32", "--out", str(tmp_path)])
    assert "sampled 0 completions" in again.output
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.glob(".pools/toy/*/pool.jsonl"))
    run = runner.invoke(app, ["run", "--method", "bon", "--task", "toy", "--pool-size", "32", "--out", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.glob(".pools/toy/*/pool.jsonl")) == before

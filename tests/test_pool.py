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


def test_a_pool_knows_its_prompts_and_finds_each_one_s_row(toy, tmp_path):
    """`pool.index(prompt)` is the row of the prompt's samples, on a sampled pool and on one reloaded from disk;
    a prompt the pool does not hold is a KeyError naming it."""
    import pytest

    from harness.policy import Prompt

    sampled = PoolCache(tmp_path).get(toy, 8, seed=0, stream="train")
    reloaded = PoolCache(tmp_path).get(toy, 8, seed=0, stream="train")
    for pool in (sampled, reloaded):
        assert pool.prompts == toy.train_prompts
        for i, prompt in enumerate(toy.train_prompts):
            assert prompt in pool and pool.index(prompt) == i
    stranger = Prompt(id="nowhere", text="", tokens=(99, 98, 97))
    assert stranger not in sampled
    with pytest.raises(KeyError, match="'nowhere' has no samples in this pool"):
        sampled.index(stranger)


def test_the_run_context_hands_out_the_evaluation_pool_only_where_n_fits_it(toy, tmp_path):
    """An inference-time method reads the evaluation pool for n <= evaluation.pool_size and samples afresh beyond;
    a policy given a pool smaller than its n fails in one line naming n and the accepted range."""
    import pytest

    from harness.method import RunContext
    from harness.methods.bon import BoNPolicy

    ctx = RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path))
    m = toy.config.evaluation.pool_size
    pool = ctx.evaluation_pool(m)
    assert pool is not None and pool.m == m and pool.prompts == toy.prompts
    assert ctx.evaluation_pool(m + 1) is None
    with pytest.raises(ValueError, match=rf"^n must lie in \[1, m={m}\], got {m + 1}$"):
        BoNPolicy(toy.reference, toy.reward, m + 1, pool).pooled(0, 4)

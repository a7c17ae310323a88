"""Soft and regularized best-of-n: exact output distributions against brute force, their own samples and their
limits; bad input fails at the edge."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from harness import bon, kl
from harness.method import RunContext
from harness.methods.bon import BoNPolicy
from harness.methods.rbon import RBoNPolicy
from harness.methods.softbon import SoftBoN, SoftBoNConfig, SoftBoNPolicy
from harness.pool import PoolCache
from tests.conftest import support_arrays


def _brute_force_softbon(p: np.ndarray, r: np.ndarray, n: int, lam: float) -> np.ndarray:
    """Sum over every n-tuple of outcomes of its probability times the softmax pick."""
    out = np.zeros(len(p))
    for tup in itertools.product(range(len(p)), repeat=n):
        ix = list(tup)
        w = np.exp(r[ix] / lam)
        np.add.at(out, ix, np.prod(p[ix]) * w / w.sum())
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("lam", [0.05, 0.7, 4.0])
def test_softbon_distribution_by_brute_force_with_ties(n, lam):
    p = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    r = np.array([0.0, 1.0, 1.0, 2.0, 0.5])  # outcomes 1 and 2 tie
    np.testing.assert_allclose(bon.softbon_distribution(p, r, n, lam), _brute_force_softbon(p, r, n, lam), atol=1e-12)


def test_softbon_tends_to_best_of_n_and_to_the_reference(toy):
    p_ref, r = support_arrays(toy, 0)
    n = 8
    best_of_n = bon.bon_distribution(p_ref, r, n)
    np.testing.assert_allclose(bon.softbon_distribution(p_ref, r, n, 1e-3), best_of_n, atol=1e-12)
    np.testing.assert_allclose(bon.softbon_distribution(p_ref, r, n, 1e6), p_ref, atol=1e-5)
    # in between, the KL to best-of-n shrinks as lambda does, and the KL to the reference grows
    lams = [8.0, 2.0, 0.5, 0.1, 0.01]
    dists = [bon.softbon_distribution(p_ref, r, n, lam) for lam in lams]
    to_bon = [kl.kl_exact(d, bon.bon_distribution(p_ref, r, n)) for d in dists]
    to_ref = [kl.kl_exact(d, p_ref) for d in dists]
    assert np.all(np.diff(to_bon) < 0) and np.all(np.diff(to_ref) > 0), (to_bon, to_ref)


def test_rbon_with_beta_0_is_best_of_n_exactly(toy):
    p_ref, r = support_arrays(toy, 1)
    for n in (1, 4, 16):
        np.testing.assert_array_equal(bon.rbon_distribution(p_ref, r, n, 0.0), bon.bon_distribution(p_ref, r, n))
    prompts = toy.prompts[:3]
    a = RBoNPolicy(0.0, toy.reference, toy.reward, 4).generate(prompts, 500, seed=5)
    b = BoNPolicy(toy.reference, toy.reward, 4).generate(prompts, 500, seed=5)
    assert a.tokens == b.tokens


def test_rbon_favours_likely_completions_as_beta_grows(toy):
    p_ref, r = support_arrays(toy, 1)
    log_p = [p_ref @ np.log(p_ref)] + [
        bon.rbon_distribution(p_ref, r, 4, beta) @ np.log(p_ref) for beta in (0.0, 0.5, 2.0, 20.0)
    ]
    assert np.all(np.diff(log_p[1:]) > 0), log_p
    # a large beta makes the score the reference log-probability: best-of-n of it picks the mode more often
    assert log_p[-1] > log_p[0]


def _chi2_p(counts: np.ndarray, target: np.ndarray) -> float:
    expected = target * counts.sum()
    big = expected >= 5  # pool the rare outcomes into one cell
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize(
    ("make", "other"),
    [
        (lambda t: SoftBoNPolicy(0.5, t.reference, t.reward, 4), lambda p, r: bon.softbon_distribution(p, r, 4, 1.0)),
        (lambda t: RBoNPolicy(0.5, t.reference, t.reward, 4), lambda p, r: bon.rbon_distribution(p, r, 4, 0.0)),
    ],
    ids=["softbon", "rbon"],
)
def test_samples_match_the_exact_distribution(toy, make, other):
    """Chi-square of the policy's own outputs against its exact distribution; the same test rejects a nearby
    distribution (power)."""
    policy = make(toy)
    prompt = toy.prompts[0]
    out = policy.generate([prompt], 20000, seed=11)
    support = toy.reference.support(prompt).tokens[0]
    index = {c: j for j, c in enumerate(support)}
    counts = np.bincount([index[c] for c in out.tokens[0]], minlength=len(support))
    p_ref, r = support_arrays(toy, 0)
    exact = np.exp(policy.logprob([prompt], [support])[0])
    assert exact.sum() == pytest.approx(1.0, abs=1e-9)
    assert _chi2_p(counts, exact) > 1e-3
    assert _chi2_p(counts, other(p_ref, r)) < 1e-6


def test_pooled_candidates_are_distinct_pool_samples(toy, tmp_path):
    """With the shared pool, each output's n candidates are a random n-subset of the prompt's pool."""
    ctx = RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path))
    policy = SoftBoN(SoftBoNConfig(n=4, **{"lambda": 1e-3})).align(ctx)
    assert isinstance(policy, SoftBoNPolicy) and policy.candidates is not None
    out = policy.generate(toy.prompts, 64, seed=3)
    pool = ctx.pool()
    for i in range(len(toy.prompts)):
        pooled = set(pool.completions.tokens[i])
        assert set(out.tokens[i]) <= pooled
        # lambda -> 0: the pick is the best of its 4 candidates, so it beats the pool's median reward mostly
        rewards = toy.reward.score([toy.prompts[i]], out)[0]
        assert np.mean(rewards >= np.median(pool.rewards[i])) > 0.8
    assert PoolCache(tmp_path).sampled == 0  # the pool came from disk: nothing sampled afresh


def test_a_run_reports_exact_metrics_and_rbon_at_beta_0_matches_bon(tmp_path):
    from harness.run import execute, resolve

    exact = ("reward_exact", "win_rate_exact", "kl_exact")
    r_bon = execute(resolve("toy", "bon", {"n": 4}), tmp_path).results
    r_rbon = execute(resolve("toy", "rbon", {"n": 4, "beta": 0.0}), tmp_path).results
    for name in exact:
        assert r_rbon["metrics"][name]["mean"] == r_bon["metrics"][name]["mean"], name
    assert r_rbon["cost"]["samples_per_output"] == 4
    assert r_rbon["metrics"]["kl_exact"]["mean"] <= r_rbon["metrics"]["kl_bon_bound"]["mean"]
    soft = execute(resolve("toy", "softbon", {"n": 4, "lambda": 1.0}), tmp_path).results
    assert 0 < soft["metrics"]["kl_exact"]["mean"] < r_bon["metrics"]["kl_exact"]["mean"]
    assert soft["metrics"]["kl_mc"]["mean"] == pytest.approx(soft["metrics"]["kl_exact"]["mean"], abs=0.1)


@pytest.mark.parametrize(("n", "lam"), [(2, 0.3), (4, 1.0), (16, 0.5), (64, 0.05)])
def test_softbon_log_ratio_is_exact_when_the_reference_rewards_follow_pi_ref(toy, n, lam):
    """A reference 'pool' whose reward frequencies are pi_ref's exactly gives the exact log pi/pi_ref."""
    p_ref, r = support_arrays(toy, 0)
    counts = np.rint(p_ref * 1e5).astype(int)  # pi_ref rounded to a law of 1e5 equally weighted draws
    q = counts / counts.sum()
    reference = np.repeat(r, counts)
    exact = np.log(bon.softbon_distribution(q, r, n, lam)[q > 0] / q[q > 0])
    np.testing.assert_allclose(bon.softbon_log_ratio(r[q > 0], reference, n, lam), exact, atol=1e-9)
    assert bon.softbon_log_ratio(r, reference, 1, lam) == pytest.approx(np.zeros(len(r)))


def test_softbon_kl_from_the_pool_lands_on_the_exact_kl(tmp_path):
    """On toy, the pool-based KL of soft best-of-n (what non-enumerable tasks report) against the exact KL."""
    from harness.run import execute, resolve

    for lam in (0.3, 1.0, 3.0):
        m = execute(resolve("toy", "softbon", {"n": 8, "lambda": lam}), tmp_path).results["metrics"]
        assert m["kl_pool"]["mean"] == pytest.approx(m["kl_exact"]["mean"], abs=0.05), lam


@pytest.mark.parametrize(
    ("method", "param", "message"),
    [
        ("softbon", "lambda=0", "invalid softbon config: lambda = 0: Input should be greater than 0"),
        ("softbon", "n=0", "invalid softbon config: n = 0: Input should be greater than or equal to 1"),
        ("rbon", "beta=-0.5", "invalid rbon config: beta = -0.5: Input should be greater than or equal to 0"),
        ("rbon", "n=0", "invalid rbon config: n = 0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_is_one_line_before_any_work(tmp_path, method, param, message):
    args = ["run", "--method", method, "--task", "toy", "-p", param, "--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {message}", proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written, nothing sampled

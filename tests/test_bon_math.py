"""Best-of-n math against exact answers: enumeration, brute force over subsets, closed forms, sampling."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
from scipy import stats

from harness import bon, kl, winrate
from harness.methods.bon import BoNPolicy
from tests.conftest import support_arrays


def test_bon_distribution_with_n_1_is_the_reference(toy):
    p_ref, r = support_arrays(toy, 0)
    np.testing.assert_allclose(bon.bon_distribution(p_ref, r, 1), p_ref, atol=1e-12)


def test_bon_distribution_by_brute_force_on_a_tiny_space():
    # 3 outcomes, two tied: enumerate all 3^n ordered draws and break ties uniformly.
    p = np.array([0.5, 0.3, 0.2])
    r = np.array([1.0, 1.0, 0.0])
    for n in (1, 2, 3, 4):
        expected = np.zeros(3)
        for draw in itertools.product(range(3), repeat=n):
            prob = np.prod(p[list(draw)])
            best = max(r[j] for j in draw)
            winners = [j for j in draw if r[j] == best]
            for j in winners:
                expected[j] += prob / len(winners)
        np.testing.assert_allclose(bon.bon_distribution(p, r, n), expected, atol=1e-12)


@pytest.mark.parametrize("n", [2, 4])
def test_bon_method_samples_match_the_exact_distribution(toy, n):
    """Chi-square of the bon method's own outputs against pi_n; the same test rejects pi_{n+1} (power)."""
    policy = BoNPolicy(toy.reference, toy.reward, n)
    prompt = toy.prompts[0]
    out = policy.generate([prompt], 20000, seed=11)
    support = toy.reference.support(prompt).tokens[0]
    index = {c: j for j, c in enumerate(support)}
    counts = np.bincount([index[c] for c in out.tokens[0]], minlength=len(support))
    p_ref, r = support_arrays(toy, 0)

    def chi2_p(target: np.ndarray) -> float:
        expected = target * counts.sum()
        big = expected >= 5  # pool the rare outcomes into one cell
        obs = np.append(counts[big], counts[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        return float(stats.chisquare(obs, exp).pvalue)

    assert chi2_p(bon.bon_distribution(p_ref, r, n)) > 1e-3
    assert chi2_p(bon.bon_distribution(p_ref, r, n + 1)) < 1e-6


def test_exact_kl_is_below_the_analytic_bound_strictly_with_ties(toy):
    for i in range(len(toy.prompts)):
        p_ref, r = support_arrays(toy, i)
        for n in range(1, 65):
            k = kl.kl_exact(bon.bon_distribution(p_ref, r, n), p_ref)
            bound = kl.kl_bon_bound(n)
            assert k <= bound + 1e-12
            if n > 1:
                assert k < bound - 1e-6


def test_tie_free_reward_approaches_the_continuous_limits():
    rng = np.random.default_rng(0)
    p_ref = rng.dirichlet(np.ones(50000))
    r = rng.permutation(50000).astype(float)
    for n in (2, 4, 16):
        p_n = bon.bon_distribution(p_ref, r, n)
        assert winrate.win_rate_exact(p_n, p_ref, r) == pytest.approx(n / (n + 1), abs=2e-3)
        assert kl.kl_exact(p_n, p_ref) == pytest.approx(kl.kl_bon_bound(n), abs=2e-2)
        assert kl.kl_exact(p_n, p_ref) <= kl.kl_bon_bound(n)


def test_win_rate_exact_of_the_reference_is_one_half(toy):
    p_ref, r = support_arrays(toy, 2)
    assert winrate.win_rate_exact(p_ref, p_ref, r) == pytest.approx(0.5, abs=1e-12)


def test_win_rate_terms_equal_brute_force_pairs():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 40).astype(float)
    z = rng.integers(0, 5, 30).astype(float)
    brute = np.array([np.mean((yi > z) + 0.5 * (yi == z)) for yi in y])
    np.testing.assert_allclose(winrate.win_rate_terms(y, z), brute)


def test_pool_weights_are_the_average_over_all_subsets():
    """sum_i w_i g(y_(i)) equals the mean of g(best) over every n-subset of the pool, exactly."""
    rewards = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    rng = np.random.default_rng(0)
    for n in range(1, len(rewards) + 1):
        brute = np.mean([max(rewards[list(s)]) for s in itertools.combinations(range(len(rewards)), n)])
        assert bon.pool_bon_mean(rewards, rewards, n, rng) == pytest.approx(brute, abs=1e-12)
        assert bon.pool_weights(len(rewards), n).sum() == pytest.approx(1.0, abs=1e-12)
    assert bon.pool_weights(64, 8)[-1] == pytest.approx(comb(63, 7) / comb(64, 8))


def test_pool_estimators_agree_with_exact_values(toy):
    """Averaged over many pools of M reference samples, the pool estimates hit the exact BoN reward and win rate."""
    p_ref, r = support_arrays(toy, 1)
    rng = np.random.default_rng(5)
    m, pools = 32, 3000
    win = 0.5 * np.add(*bon.reward_cdfs(p_ref, r))  # win rate of each outcome against pi_ref
    draws = rng.choice(len(p_ref), size=(pools, m), p=p_ref)
    for n in (1, 4, 16, 32):
        p_n = bon.bon_distribution(p_ref, r, n)
        est_r = np.array([bon.pool_bon_mean(r[d], r[d], n, rng) for d in draws])
        est_w = np.array([bon.pool_bon_mean(r[d], win[d], n, rng) for d in draws])
        for est, exact in ((est_r, p_n @ r), (est_w, winrate.win_rate_exact(p_n, p_ref, r))):
            se = est.std(ddof=1) / np.sqrt(pools)
            assert abs(est.mean() - exact) < 4 * se + 1e-12


def test_beirami_estimate_lies_between_zero_and_the_bound():
    # Whole sequences have tiny probabilities: e down to exp(-2000), far below the smallest double.
    log_eps = np.concatenate([-np.logspace(-12, np.log10(2000), 3000), np.log(np.linspace(0, 1, 1001)[1:])])
    for n in (1, 2, 3, 8, 64, 1000):
        terms = kl.kl_bon_beirami_terms(log_eps, n)
        assert np.all(np.isfinite(terms))
        assert terms.min() >= -1e-12
        assert terms.max() <= kl.kl_bon_bound(n) + 1e-12
    for log_e in (np.log(1e-12), -80.0, -2000.0):  # the limit e -> 0 is the bound
        assert kl.kl_bon_beirami_terms(np.array([log_e]), 8)[0] == pytest.approx(kl.kl_bon_bound(8), abs=1e-9)
    assert kl.kl_bon_beirami_terms(np.array([0.0]), 8)[0] == 0.0
    # Against the formula evaluated naively where that is accurate.
    e = np.array([0.3, 0.05, 0.9])
    n = 5
    t = (1 - e) ** n
    naive = t * (np.log(n) + (n - 1) * np.log(1 - e) - (n - 1) / n) + (1 - t) * np.log((1 - t) / e)
    np.testing.assert_allclose(kl.kl_bon_beirami_terms(np.log(e), n), naive, rtol=1e-12)


def test_bad_n_is_rejected():
    with pytest.raises(ValueError, match="n must"):
        bon.bon_distribution(np.array([1.0]), np.array([0.0]), 0)
    with pytest.raises(ValueError, match="n must"):
        bon.pool_weights(4, 5)


def test_argmax_breaks_ties_uniformly():
    rng = np.random.default_rng(0)
    picks = bon.argmax_random_ties(np.tile([1.0, 3.0, 3.0, 0.0, 3.0], (30000, 1)), rng)
    counts = np.bincount(picks, minlength=5)
    assert counts[0] == counts[3] == 0
    assert stats.chisquare(counts[[1, 2, 4]]).pvalue > 1e-3

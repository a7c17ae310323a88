"""The methods' objectives and their closed-form optima, against exact answers and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from harness import bon, kl, objectives, targets
from tests.conftest import support_arrays


def test_pool_cdf_is_smoothed_and_never_zero():
    pool = np.array([0.3, -1.0, 2.0, 0.3])
    f = objectives.pool_cdf(pool, np.array([-5.0, 0.3, 0.31, 9.0]))
    np.testing.assert_allclose(f, [1 / 5, 2 / 5, 4 / 5, 5 / 5])
    f_le = objectives.pool_cdf(pool, np.array([-5.0, 0.3, 0.31, 9.0]), inclusive=True)
    np.testing.assert_allclose(f_le, [1 / 5, 4 / 5, 4 / 5, 5 / 5])


def test_vbon_reward_is_the_exact_log_ratio_without_ties():
    rng = np.random.default_rng(0)
    p_ref = rng.dirichlet(np.ones(300))
    r = rng.permutation(300).astype(float)
    f_lt, _ = bon.reward_cdfs(p_ref, r)
    for n in (1, 2, 3, 8, 32):
        expected = np.log(bon.bon_distribution(p_ref, r, n) / p_ref)
        with np.errstate(divide="ignore"):
            got = objectives.vbon_log_ratio(np.log(f_lt), np.log(p_ref), n)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_bonbon_beta_and_its_meaning():
    assert objectives.bonbon_beta(8) == pytest.approx(0.0275482, abs=5e-8)
    with pytest.raises(ValueError, match="n >= 2"):
        objectives.bonbon_beta(1)
    # Under best-of-n with continuous rewards log(pi_n / pi_ref)(y) = log n + (n-1) log F(y), so the expected
    # gap between the best and the worst of n samples is (n-1)(E log F_max - E log F_min) = 1/(2 beta_n).
    rng = np.random.default_rng(0)
    for n in (2, 4, 8):
        u = rng.random((400_000, n))
        h = (n - 1) * (np.log(u.max(axis=1)) - np.log(u.min(axis=1)))
        se = h.std() / np.sqrt(len(h))
        assert abs(h.mean() - 1 / (2 * objectives.bonbon_beta(n))) < 4 * se


def test_pair_losses_numpy_and_torch_agree():
    h = np.array([-2.0, 0.0, 0.5, 3.0])
    for kind in ("sigmoid", "ipo"):
        a = objectives.dpo_loss(h, 0.1, kind)
        b = objectives.dpo_loss(torch.tensor(h), 0.1, kind).numpy()
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert objectives.dpo_loss(np.array(0.0), 0.3) == pytest.approx(np.log(2))
    best = optimize.minimize_scalar(lambda x: float(objectives.dpo_loss(np.array(x), 0.25, "ipo"))).x
    assert best == pytest.approx(2.0, abs=1e-6)
    beta_n = objectives.bonbon_beta(8)
    loss = objectives.bonbon_loss(np.array(1 / (2 * beta_n)), np.array(3.0), beta_n, alpha=0.005)
    assert loss == pytest.approx(0.005 * 3.0)
    logistic = objectives.bonbon_loss(np.array(0.0), np.array(0.0), beta_n, alpha=0.0, pair="logistic")
    assert logistic == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="accepted"):
        objectives.dpo_loss(h, 0.1, "hinge")


def test_jbond_reward():
    r = np.array([0.0, 1.0, 2.0])
    anchors = np.array([[0.5, 1.5], [0.5, 1.5], [0.5, 1.5]])
    np.testing.assert_allclose(objectives.jbond_reward(r, anchors), [-np.log(16), 0.0, 0.0])


def _objective(p, p_ref, log_reward, beta):
    return float(p @ log_reward) - beta * kl.kl_exact(p, p_ref)


@pytest.mark.parametrize("beta", [0.1, 1.0, 4.0])
def test_kl_regularized_optimum_is_the_maximiser(toy, beta):
    """pi_ref exp(r/beta)/Z attains the maximum beta log Z, and every perturbation of it does worse."""
    p_ref, r = support_arrays(toy, 0)
    opt = targets.kl_regularized_optimum(p_ref, r, beta)
    value = _objective(opt, p_ref, r, beta)
    assert value == pytest.approx(beta * np.log(np.sum(p_ref * np.exp(r / beta))), rel=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(50):
        other = targets.tilt(opt, 0.3 * rng.normal(size=len(opt)))
        assert _objective(other, p_ref, r, beta) < value


def test_vbon_l1_optimum_is_the_maximiser(toy):
    p_ref, r = support_arrays(toy, 1)
    n = 4
    _, f_le = bon.reward_cdfs(p_ref, r)
    opt = targets.vbon_l1_optimum(p_ref, r, n)
    value = _objective(opt, p_ref, np.log(f_le), 1 / (n - 1))
    rng = np.random.default_rng(1)
    for _ in range(50):
        assert _objective(targets.tilt(opt, 0.3 * rng.normal(size=len(opt))), p_ref, np.log(f_le), 1 / (n - 1)) < value
    assert targets.vbon_optimum(p_ref, r, n) == pytest.approx(bon.bon_distribution(p_ref, r, n))


@pytest.mark.parametrize("c", [0.5, 2.0, 6.0])
def test_tilt_curves_by_numerical_integration(c):
    density = lambda q: c * np.exp(c * q) / np.expm1(c)  # noqa: E731  (the tilt of the uniform quantile)
    win = integrate.quad(lambda q: q * density(q), 0, 1)[0]
    kl_value = integrate.quad(lambda q: density(q) * np.log(density(q)), 0, 1)[0]
    assert targets.tilt_win_rate(c) == pytest.approx(win, rel=1e-9)
    assert targets.tilt_kl(c) == pytest.approx(kl_value, rel=1e-9)


def test_the_tilt_beats_best_of_n_at_equal_kl():
    """The win-rate-optimal tilt wins at least as often as best-of-n at the same KL (Gui et al. 2024)."""
    for n in (2, 4, 16, 64):
        bound = kl.kl_bon_bound(n)
        c = optimize.brentq(lambda x, b=bound: targets.tilt_kl(x) - b, 1e-6, 200)
        assert targets.tilt_win_rate(c) >= n / (n + 1) - 1e-12

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
    n, m = 4, 64
    f_lt, _ = bon.reward_cdfs(p_ref, r)
    log_f = np.log(objectives.smoothed_cdf(f_lt, m))
    opt = targets.vbon_l1_optimum(p_ref, r, n, pool_size=m)
    value = _objective(opt, p_ref, log_f, 1 / (n - 1))
    rng = np.random.default_rng(1)
    for _ in range(50):
        assert _objective(targets.tilt(opt, 0.3 * rng.normal(size=len(opt))), p_ref, log_f, 1 / (n - 1)) < value
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


def test_vbon_l1_pool_and_exact_optima_agree_on_tied_rewards():
    """The minimal case: p = [0.5, 0.5], r = [0, 1], n = 4. A perfect pool of 256 (128 of each reward) gives the
    same add-one CDF as `cdf=exact`, so both optimise the same objective, and the target is its optimum."""
    p, r, n, m = np.array([0.5, 0.5]), np.array([0.0, 1.0]), 4, 256
    pool = np.repeat(r, m // 2)
    f_pool = objectives.pool_cdf(pool, r)
    f_lt, _ = bon.reward_cdfs(p, r)
    np.testing.assert_allclose(objectives.smoothed_cdf(f_lt, m), f_pool, rtol=1e-15)
    np.testing.assert_allclose(f_pool, [1 / 257, 129 / 257])
    pool_optimum = targets.tilt(p, (n - 1) * objectives.vbon_l1_reward(f_pool))
    target = targets.vbon_l1_optimum(p, r, n, pool_size=m)
    np.testing.assert_allclose(target, pool_optimum, rtol=1e-12)
    assert target[0] == pytest.approx(1 / (1 + 129**3), rel=1e-12)  # 4.7e-7
    # without smoothing: the exact strict CDF puts nothing on the lowest reward (pi_BoN itself is [1/16, 15/16])
    np.testing.assert_array_equal(targets.vbon_l1_optimum(p, r, n), [0.0, 1.0])
    np.testing.assert_allclose(bon.bon_distribution(p, r, n), [0.0625, 0.9375])


def test_the_l1_reward_is_a_lower_bound_with_ties_and_f_le_is_not(toy):
    """log pi_BoN >= log n + (n-1) log F< + log pi_ref for every outcome, ties included (Lemma 1's i = 1 term);
    with F<= in place of F< the inequality fails for tied outcomes."""
    p_ref, r = support_arrays(toy, 2)
    f_lt, f_le = bon.reward_cdfs(p_ref, r)
    for n in (2, 4, 8):
        log_bon = np.log(bon.bon_distribution(p_ref, r, n))
        with np.errstate(divide="ignore"):
            assert np.all(log_bon >= np.log(n) + (n - 1) * objectives.vbon_l1_reward(f_lt) + np.log(p_ref) - 1e-12)
        assert np.any(log_bon < np.log(n) + (n - 1) * np.log(f_le) + np.log(p_ref) - 1e-6)


def test_vbon_released_optimum_is_the_maximiser_of_its_objective(toy):
    """pi_ref (pi_BoN/pi_ref)^((n-1)/n) / Z maximises E[(1/n) log pi_BoN/pi_ref] - KL/(n-1); it is not pi_BoN."""
    p_ref, r = support_arrays(toy, 3)
    n = 8
    reward = np.log(bon.bon_distribution(p_ref, r, n) / p_ref) / n
    opt = targets.vbon_released_optimum(p_ref, r, n)
    value = _objective(opt, p_ref, reward, 1 / (n - 1))
    rng = np.random.default_rng(2)
    for _ in range(50):
        assert _objective(targets.tilt(opt, 0.3 * rng.normal(size=len(opt))), p_ref, reward, 1 / (n - 1)) < value
    # a geometric mix of pi_ref and pi_BoN: closer to pi_ref than pi_BoN is
    assert kl.kl_exact(opt, p_ref) < kl.kl_exact(bon.bon_distribution(p_ref, r, n), p_ref) - 0.05


def test_bonbon_tied_gap_without_ties_is_the_paper_target():
    """2,000 equally likely distinct rewards: the gap tends to (n-1) H_{n-1} = 1/(2 beta_n)."""
    m = 2000
    for n in (2, 4, 8):
        gap = objectives.bonbon_tied_gap(np.full(m, 1 / m), np.arange(m, dtype=float), n)
        assert gap == pytest.approx(1 / (2 * objectives.bonbon_beta(n)), rel=0.01)


def test_bonbon_tied_gap_by_monte_carlo_on_tied_rewards(toy):
    """The mean of g(best) - g(worst) over sampled n-tuples that are not all tied, g = log pi_BoN/pi_ref."""
    p_ref, r = support_arrays(toy, 0)
    n = 4
    g = np.log(bon.bon_distribution(p_ref, r, n) / p_ref)
    rng = np.random.default_rng(3)
    draws = rng.choice(len(p_ref), size=(200000, n), p=p_ref)
    rewards = r[draws]
    keep = rewards.max(1) > rewards.min(1)
    best = draws[np.arange(len(draws)), rewards.argmax(1)]
    worst = draws[np.arange(len(draws)), rewards.argmin(1)]
    gaps = (g[best] - g[worst])[keep]
    exact = objectives.bonbon_tied_gap(p_ref, r, n)
    assert exact == pytest.approx(gaps.mean(), abs=4 * gaps.std() / np.sqrt(len(gaps)))
    assert exact < 1 / (2 * objectives.bonbon_beta(n))  # these ties shrink the gap at n = 4


def test_bonbon_tied_gap_lies_on_either_side_of_the_paper_target_and_is_biased_low_from_a_pool():
    """Atoms move the gap up or down; M pooled samples of distinct rewards form a law of M atoms of 1/M, whose gap
    depends on M and n alone and approaches (n-1) H_{n-1} from below for n = 8 as M grows."""
    two_levels = objectives.bonbon_tied_gap(np.array([0.5, 0.5]), np.array([0.0, 1.0]), 2)
    assert two_levels == pytest.approx(np.log(3.0), abs=1e-12)  # pairs (low, high): g = log(3/4 / 1/2) - log(1/2)
    assert two_levels > 1 / (2 * objectives.bonbon_beta(2))
    rng = np.random.default_rng(0)
    gaps = []
    for m in (16, 64, 256):
        pooled = rng.normal(size=m)  # any distinct rewards give the same gap
        gap = objectives.bonbon_tied_gap(np.ones(m), pooled, 8)
        assert gap == pytest.approx(objectives.bonbon_tied_gap(np.ones(m), np.arange(m, dtype=float), 8), abs=1e-9)
        gaps.append(gap)
    np.testing.assert_allclose(gaps, [15.4873, 17.3859, 17.9482], atol=1e-4)
    assert gaps[-1] < 1 / (2 * objectives.bonbon_beta(8)) == pytest.approx(18.15, abs=0.005)


def test_ipo_per_token_divides_each_completion_s_log_ratio_by_its_length(toy):
    """`PoolPairs.gap` over whole sequences (the papers' h) and per token (TRL's IPO), against log-probabilities
    computed directly, on completions of 1 to 3 tokens."""
    import copy

    from harness.policy import Completions
    from harness.pool import Pool
    from harness.training.logprobs import sequence_logprob
    from harness.training.pairs import PoolPairs, pool_extremes

    prompt = toy.prompts[0]
    comps = [(1,), (2, 3), (4, 5, 0), (3, 3)]
    with torch.no_grad():
        ref = sequence_logprob(toy.model, [prompt] * 4, comps).double().numpy()
    pool = Pool(  # the pairs read the sequence sums of the reference log-probabilities only
        prompts=[prompt],
        completions=Completions(tokens=[comps], text=[[""] * 4], ref_token_logprobs=[[np.array([v]) for v in ref]]),
        rewards=[np.array([0.0, 1.0, 2.0, 3.0])],
        gold=None,
    )
    model = copy.deepcopy(toy.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    pairs = PoolPairs(pool)
    best, worst, _ = pool_extremes(pool.rewards[0], 2, 6, np.random.default_rng(0))
    with torch.no_grad():
        ratio = sequence_logprob(model, [prompt] * 4, comps).double().numpy() - ref
        whole = pairs.gap(model, [prompt], 2, 6, np.random.default_rng(0))
        per_token = pairs.gap(model, [prompt], 2, 6, np.random.default_rng(0), per_token=True)
    assert whole is not None and per_token is not None
    length = np.array([len(c) for c in comps], float)
    np.testing.assert_allclose(whole[0].numpy(), ratio[best] - ratio[worst], atol=1e-5)
    np.testing.assert_allclose(
        per_token[0].numpy(), ratio[best] / length[best] - ratio[worst] / length[worst], atol=1e-5
    )
    assert not np.allclose(whole[0].numpy(), per_token[0].numpy())

"""Closed-form optima of the methods' objectives on an enumerable outcome space (docs/formulas.md, "Training
objectives"), and the reference curves drawn on leaderboard plots (docs/formulas.md, "Reference curves"). Tests
train on the toy task toward these."""

from __future__ import annotations

import numpy as np

from harness.bon import bon_distribution, reward_cdfs
from harness.objectives import smoothed_cdf


def tilt(p_ref: np.ndarray, log_weight: np.ndarray) -> np.ndarray:
    """pi(y) = pi_ref(y) exp(w(y)) / Z, computed in log space (w = -inf gives 0)."""
    logits = np.log(np.asarray(p_ref, np.float64)) + np.asarray(log_weight, np.float64)
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def kl_regularized_optimum(p_ref: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """argmax_pi E_pi[r] - beta KL(pi || pi_ref) = pi_ref exp(r / beta) / Z (Rafailov et al. 2023, Eq. 4):
    the target of ppo (and of dpo on pairs labelled by r through Bradley-Terry)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return tilt(p_ref, np.asarray(rewards, np.float64) / beta)


def vbon_optimum(p_ref: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """vBoN minimises KL(pi || pi_BoN), so its optimum is the best-of-n distribution itself."""
    return bon_distribution(p_ref, rewards, n)


def vbon_l1_optimum(p_ref: np.ndarray, rewards: np.ndarray, n: int, pool_size: int | None = None) -> np.ndarray:
    """The optimum of E_pi[log F(r(y))] - KL(pi || pi_ref) / (n-1): pi_ref F^(n-1) / Z (Amini et al. 2024, Eq. 9),
    with F = F<, the strict reward CDF under pi_ref that the bound is built on (`objectives.vbon_l1_reward`), or,
    given `pool_size` m, its add-one form (1 + m F<) / (m + 1) that vbon's l1 reward uses (`cdf=pool` estimates
    it from a pool of m, `cdf=exact` computes it). Without smoothing the outcomes of the lowest reward get 0."""
    f_lt, _ = reward_cdfs(p_ref, rewards)
    f = f_lt if pool_size is None else smoothed_cdf(f_lt, pool_size)
    with np.errstate(divide="ignore"):
        return tilt(p_ref, (n - 1) * np.log(f))


def vbon_released_optimum(p_ref: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """The optimum of vbon's `released` variant, E_pi[(1/n) log(pi_BoN/pi_ref)] - KL(pi || pi_ref) / (n-1) (the
    scaling of the authors' released code for Amini et al. 2024): pi_ref (pi_BoN/pi_ref)^((n-1)/n) / Z, a
    geometric mix of pi_ref and pi_BoN that approaches pi_BoN as n grows."""
    p_ref = np.asarray(p_ref, np.float64)
    return tilt(p_ref, (n - 1) / n * np.log(bon_distribution(p_ref, rewards, n) / p_ref))


def tilt_win_rate(c: np.ndarray) -> np.ndarray:
    """Win rate of the win-rate-optimal tilt pi ∝ pi_ref exp(c Q), Q the reference reward quantile:
    ((c-1) e^c + 1) / (c (e^c - 1)) (Gui et al. 2024, Theorem 1)."""
    c = np.asarray(c, np.float64)
    return ((c - 1.0) * np.exp(c) + 1.0) / (c * np.expm1(c))


def tilt_kl(c: np.ndarray) -> np.ndarray:
    """KL of the same tilt from pi_ref: c e^c / (e^c - 1) - 1 - log((e^c - 1) / c)."""
    c = np.asarray(c, np.float64)
    return c * np.exp(c) / np.expm1(c) - 1.0 - np.log(np.expm1(c) / c)

"""Best-of-n distributions: exact (with ties) and estimated from a pool of reference samples.

Notation (DESIGN.md section 4): pi_ref the reference policy, r the proxy reward,
F<(y) = P_{z~pi_ref}(r(z) < r(y)), F<=(y) likewise with <=, [y] the outcomes whose reward equals r(y).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def reward_cdfs(p_ref: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (F<(y), F<=(y)) for every outcome y of a discrete distribution p_ref over outcomes with rewards."""
    p_ref = np.asarray(p_ref, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    levels, group = np.unique(rewards, return_inverse=True)
    mass = np.bincount(group, weights=p_ref, minlength=len(levels))
    below = np.concatenate([[0.0], np.cumsum(mass)[:-1]])
    f_lt = below[group]
    f_le = np.minimum(f_lt + mass[group], 1.0)
    return f_lt, f_le


def bon_distribution(p_ref: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """Exact distribution of the best of n i.i.d. draws from p_ref, ties broken uniformly at random.

    pi_n(y) = pi_ref(y) / pi_ref([y]) * (F<=(y)^n - F<(y)^n)
    (Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy", Lemma 1, extended to
    ties: the best reward level [y] is reached with probability F<=^n - F<^n and y is drawn within its level
    in proportion to pi_ref.)
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    p_ref = np.asarray(p_ref, dtype=np.float64)
    f_lt, f_le = reward_cdfs(p_ref, rewards)
    level_mass = f_le - f_lt
    out = np.zeros_like(p_ref)
    nz = level_mass > 0
    out[nz] = p_ref[nz] / level_mass[nz] * (f_le[nz] ** n - f_lt[nz] ** n)
    return out


def pool_weights(m: int, n: int) -> np.ndarray:
    """Weights w_i, i = 1..m, of the i-th smallest of m pooled samples being the best of a random n-subset.

    w_i = C(i-1, n-1) / C(m, n) for i >= n, else 0. Then sum_i w_i g(y_(i)) is an unbiased estimate of
    E[g(best of n)] for every n <= m (the U-statistic over all n-subsets of the pool; Nakano et al. 2021,
    WebGPT appendix, and DESIGN.md section 4).
    """
    if not 1 <= n <= m:
        raise ValueError(f"n must lie in [1, m={m}], got {n}")
    i = np.arange(1, m + 1, dtype=np.float64)
    w = np.zeros(m)
    k = i >= n
    log_c = lambda a, b: gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)  # noqa: E731
    w[k] = np.exp(log_c(i[k] - 1, n - 1) - log_c(float(m), float(n)))
    return w


def pool_bon_mean(rewards: np.ndarray, values: np.ndarray, n: int, rng: np.random.Generator) -> float:
    """Unbiased estimate of E[g(best of n)] from one pool of m reference samples of a prompt.

    rewards: the pool's proxy rewards, shape (m,); values: g of each pooled sample, shape (m,).
    Ties in reward are ordered at random, which matches best-of-n with uniform tie breaking.
    """
    order = pool_order(rewards, rng)
    return float(pool_weights(len(rewards), n) @ np.asarray(values, dtype=np.float64)[order])


def pool_order(rewards: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices that sort a pool by increasing reward, ties in uniformly random order (for `pool_weights`)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    perm = rng.permutation(len(rewards))
    return perm[np.argsort(rewards[perm], kind="stable")]


def argmax_random_ties(rewards: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index of the largest reward along the last axis, a uniformly random one among ties."""
    rewards = np.asarray(rewards)
    best = rewards == rewards.max(axis=-1, keepdims=True)
    keys = np.where(best, rng.random(rewards.shape), -1.0)
    return np.asarray(keys.argmax(axis=-1))

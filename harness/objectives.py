"""The objectives of the methods that fine-tune toward best-of-n, as pure functions (docs/formulas.md, "Training
objectives").

Each is what a method adapter's loss or reward is built from; the closed-form optima they target are in
`harness.targets`. Array arguments are numpy or torch, elementwise.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp


def pool_cdf(pool_rewards: np.ndarray, rewards: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """Add-one smoothed reward CDF of one prompt from its reference pool: (1 + #{j: r_j < r}) / (M + 1), the
    strict F< of vBoN (Amini et al. 2024, Lemma 1; as in the authors' released code), or with r_j <= r where
    `inclusive` (BOND's p<=, Sessa et al. 2024, Eq. 8, used with beta = 1/(n-1)).

    Never 0, so its logarithm is finite for every reward.
    """
    pool = np.sort(np.asarray(pool_rewards, np.float64))
    below = np.searchsorted(pool, np.asarray(rewards, np.float64), side="right" if inclusive else "left")
    return np.asarray((1.0 + below) / (len(pool) + 1.0))


def smoothed_cdf(f_lt: np.ndarray, m: int) -> np.ndarray:
    """(1 + m F<) / (m + 1): the add-one CDF of `pool_cdf` for a pool of m whose counts #{j: r_j < r} equal their
    expectation m F<(r). The exact counterpart of the pool estimate, so that `cdf=exact` and `cdf=pool` optimise
    the same objective; it tends to F< as m grows."""
    if m < 1:
        raise ValueError(f"m must be a positive integer, got {m}")
    return (1.0 + m * np.asarray(f_lt, np.float64)) / (m + 1.0)


def vbon_log_ratio(log_f_lt: np.ndarray, log_p_ref: np.ndarray, n: int) -> np.ndarray:
    """vBoN's RL reward rho(y) = log pi_BoN(y) - log pi_ref(y) (Amini et al. 2024, Eq. 6 and Lemma 1).

    log pi_BoN(y) = logsumexp_{i=1..n} [log C(n, i) + (n-i) log F<(y) + i log pi_ref(y)], which is
    log(F<(y) + pi_ref(y))^n - F<(y)^n) written without cancellation: exact where no other outcome shares
    y's reward (sequences with continuous rewards).
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    log_f = np.asarray(log_f_lt, np.float64)[..., None]
    log_p = np.asarray(log_p_ref, np.float64)[..., None]
    i = np.arange(1, n + 1, dtype=np.float64)
    log_binom = gammaln(n + 1) - gammaln(i + 1) - gammaln(n - i + 1)
    with np.errstate(invalid="ignore"):  # 0 * -inf where F< = 0 and i = n
        terms = log_binom + np.where(i < n, (n - i) * log_f, 0.0) + i * log_p
    return np.asarray(logsumexp(terms, axis=-1) - log_p[..., 0])


def vbon_l1_reward(f_lt: np.ndarray) -> np.ndarray:
    """vBoN's lower-bound reward log F<(r(y)), used with beta = 1/(n-1) (Amini et al. 2024, Eq. 9).

    The bound keeps the i = 1 term of Lemma 1, log pi_BoN(y) >= log n + (n-1) log F<(y) + log pi_ref(y), with the
    strict F<(y) = P_{z~pi_ref}(r(z) < r(y)). It holds with ties too: pi_BoN(y) = pi_ref(y)/pi_ref([y]) *
    ((F< + pi_ref([y]))^n - F<^n) >= n F<^(n-1) pi_ref(y). With F<= in its place it would bound log pi_BoN from
    above instead, so F< (or its add-one estimate, `pool_cdf`) is the convention for every `cdf`."""
    return np.log(np.asarray(f_lt, np.float64))


def bonbon_beta(n: int) -> float:
    """beta_n = 1 / (2 (n-1) H_{n-1}) (Gui et al. 2024, Theorem 3); 1/(2 beta_n) = (n-1) H_{n-1} nats (1, 5.5,
    18.15 at n = 2, 4, 8) is the expected gap g(y+) - g(y-), g = log pi_BoN/pi_ref, between the best and the
    worst of n draws, when the reward law has no atoms (continuous rewards: no ties, no output of positive mass)."""
    if n < 2:
        raise ValueError(f"BoNBoN needs n >= 2 (a best and a worst sample), got {n}")
    harmonic = float(np.sum(1.0 / np.arange(1, n)))
    return 1.0 / (2.0 * (n - 1) * harmonic)


def bonbon_tied_gap(p: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """The expected best-minus-worst log-ratio gap of BoNBoN's pairs under the tie-aware best-of-n policy:
    E[g(y+) - g(y-) | r(y+) > r(y-)], y+ and y- the best and worst of n i.i.d. draws from p over outcomes with
    these rewards, g(y) = log pi_BoN(y)/p(y) = log((F<=^n - F<^n) / p([y])) (harness.bon.bon_distribution).

    With reward levels of masses q_k and G_k = q_1 + ... + q_k: P(max = k) = G_k^n - G_{k-1}^n,
    P(min = k) = (1 - G_{k-1})^n - (1 - G_k)^n, and pairs whose n draws all tie (probability sum_k q_k^n) carry no
    preference and are not trained on.

    It equals (n-1) H_{n-1} = 1/(2 beta_n) (Gui et al. 2024, Theorem 3) only in the limit of a law without atoms
    (every q_k -> 0). A law with atoms moves it either way: two equal levels give log 3 = 1.099 nats at n = 2,
    above 1; on toy it is 1.13 at n = 2 (above 1), 5.01 at n = 4 and 15.57 at n = 8 (below 5.5 and 18.15; means
    over prompts). The empirical law of M pooled samples of distinct rewards puts 1/M on each, so its gap
    depends on M and n alone and lies below the continuous one for n >= 4: 15.49 at M = 16, 17.39 at M = 64,
    17.95 at M = 256 for n = 8 (and 1.017 at M = 16 for n = 2). From a pool it estimates the gap of continuous
    rewards with that downward bias; it is the gap of the law only where rewards truly tie.
    """
    if n < 2:
        raise ValueError(f"BoNBoN needs n >= 2 (a best and a worst sample), got {n}")
    levels, group = np.unique(np.asarray(rewards, np.float64), return_inverse=True)
    q = np.bincount(group, weights=np.asarray(p, np.float64), minlength=len(levels))
    q = q / q.sum()
    g_le = np.minimum(np.cumsum(q), 1.0)
    g_lt = np.concatenate([[0.0], g_le[:-1]])
    p_max = g_le**n - g_lt**n
    p_min = (1.0 - g_lt) ** n - (1.0 - g_le) ** n
    tied = float(np.sum(q**n))
    if tied >= 1.0 - 1e-12:
        raise ValueError("every reward is equal: no best-and-worst pair carries a preference")
    keep = q > 0
    g = np.log(p_max[keep] / q[keep])
    return float(g @ (p_max[keep] - p_min[keep]) / (1.0 - tied))


def bonbon_pair_gap(logp_best, logp_worst, ref_best, ref_worst):  # type: ignore[no-untyped-def]
    """h = [log pi(y+) - log pi(y-)] - [log pi_ref(y+) - log pi_ref(y-)] (sequence log-probabilities)."""
    return (logp_best - logp_worst) - (ref_best - ref_worst)


def bonbon_loss(h, nll_best, beta_n: float, alpha: float, pair: str = "ipo", gap=None):  # type: ignore[no-untyped-def]
    """alpha * NLL(y+) + (1 - alpha) * pair term (Gui et al. 2024, Eq. 9).

    pair = "ipo": (h - gap)^2 with gap = 1/(2 beta_n), the paper's objective, unless a `gap` (per pair, e.g.
    `bonbon_tied_gap`) is given; "logistic": -log sigmoid(beta_n h), the pair term of the authors' released code.
    """
    if pair == "ipo":
        term = (h - (1.0 / (2.0 * beta_n) if gap is None else gap)) ** 2
    elif pair == "logistic":
        term = _softplus(-beta_n * h)
    else:
        raise ValueError(f"unknown BoNBoN pair term {pair!r}; accepted: 'ipo', 'logistic'")
    return alpha * nll_best + (1.0 - alpha) * term


def dpo_loss(h, beta: float, kind: str = "sigmoid"):  # type: ignore[no-untyped-def]
    """DPO: -log sigmoid(beta h) (Rafailov et al. 2023, Eq. 7); IPO: (h - 1/(2 beta))^2 (Azar et al. 2023, Eq. 17).

    h is the log-ratio gap of the chosen over the rejected completion (`bonbon_pair_gap`): over whole sequences
    in both papers; TRL's IPO averages each completion's log-ratio over its tokens (`dpo`'s `ipo_per_token`).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if kind == "sigmoid":
        return _softplus(-beta * h)
    if kind == "ipo":
        return (h - 1.0 / (2.0 * beta)) ** 2
    raise ValueError(f"unknown DPO loss {kind!r}; accepted: 'sigmoid', 'ipo'")


def jbond_reward(rewards: np.ndarray, anchor_rewards: np.ndarray) -> np.ndarray:
    """J-BOND's reward: -log 16 where r(y) is below the reward of every anchor sample (last axis), else 0
    (Sessa et al. 2024, section 5, with n = 2 anchor samples)."""
    below_all = np.asarray(rewards) < np.min(anchor_rewards, axis=-1)
    return np.where(below_all, -np.log(16.0), 0.0)


def _softplus(x):  # type: ignore[no-untyped-def]
    """log(1 + e^x), stable for numpy arrays and torch tensors alike."""
    if isinstance(x, np.ndarray | float | int):
        return np.logaddexp(0.0, x)
    import torch

    return torch.nn.functional.softplus(x)

"""KL divergence of a policy from the reference policy, in nats, at the sequence level, never clamped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import rel_entr, xlogy


def kl_exact(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum_y p(y) log(p(y) / q(y)) over an enumerated outcome space (inf where q = 0 < p)."""
    return float(np.sum(rel_entr(np.asarray(p, np.float64), np.asarray(q, np.float64))))


def kl_k1_terms(logp: np.ndarray, logp_ref: np.ndarray) -> np.ndarray:
    """Per-sample k1 estimates log pi(y) - log pi_ref(y) for y ~ pi (sequence log-probabilities).

    Their mean is an unbiased estimate of KL(pi || pi_ref) (Schulman 2020, "Approximating KL divergence");
    single terms can be negative and are kept as they are.
    """
    return np.asarray(logp, np.float64) - np.asarray(logp_ref, np.float64)


def kl_k3_terms(token_logp: Sequence[np.ndarray], token_logp_ref: Sequence[np.ndarray]) -> np.ndarray:
    """Per-sample k3 estimates sum_t (rho_t - 1 - log rho_t), rho_t = pi_ref(y_t|.) / pi(y_t|.), for y ~ pi.

    Every term is >= 0 and its expectation under pi(.|y_<t) is the per-step KL, so the mean over samples is
    an unbiased estimate of the sequence KL(pi || pi_ref) with lower variance than k1 when pi ~ pi_ref
    (Schulman 2020).
    """
    out = np.empty(len(token_logp))
    for i, (lp, lp_ref) in enumerate(zip(token_logp, token_logp_ref, strict=True)):
        log_rho = np.asarray(lp_ref, np.float64) - np.asarray(lp, np.float64)
        out[i] = np.sum(np.expm1(log_rho) - log_rho)
    return out


def kl_bon_bound(n: int) -> float:
    """Analytic KL(pi_BoN || pi_ref) <= log n - (n-1)/n (Beirami et al. 2024, Theorem 1).

    Equality holds when no outcome carries positive mass (continuous rewards); ties make it loose.
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    return float(np.log(n) - (n - 1) / n)


def kl_bon_beirami_terms(log_eps: np.ndarray, n: int) -> np.ndarray:
    """Beirami et al. (2024, Theorem 3) estimate of KL(pi_BoN || pi_ref), one term per best-of-n draw y.

    (1-e)^n [log n + (n-1) log(1-e) - (n-1)/n] + (1-(1-e)^n) log((1-(1-e)^n)/e),  e = pi_ref(y).
    Averaged over best-of-n draws it estimates the KL; each term lies in [0, log n - (n-1)/n].
    Takes log e, since e of a whole sequence underflows; computed with log1p/expm1 so that tiny e (where
    1 - (1-e)^n rounds to 0) keeps its limit: the term tends to the bound as e -> 0 and to 0 as e -> 1.
    """
    log_eps = np.asarray(log_eps, np.float64)
    eps = np.exp(log_eps)
    with np.errstate(divide="ignore"):
        log1m = np.log1p(-eps)  # log(1-e); -inf at e = 1
    tail = np.exp(n * log1m)  # (1-e)^n
    one_minus_tail = -np.expm1(n * log1m)
    # (1-e)^n (n-1) log(1-e) written with xlogy so that e = 1 gives its limit 0.
    first = tail * (np.log(n) - (n - 1) / n) + (n - 1) * (1.0 - eps) ** (n - 1) * xlogy(1.0 - eps, 1.0 - eps)
    with np.errstate(divide="ignore"):
        # log((1-(1-e)^n)/e), whose limit as e -> 0 is log n (used where e underflows to 0).
        log_ratio = np.where(eps > 0, np.log(one_minus_tail) - log_eps, np.log(n))
    return np.asarray(first + one_minus_tail * log_ratio)

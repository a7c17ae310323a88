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


def kl_bon_beirami_terms(eps: np.ndarray, n: int) -> np.ndarray:
    """Beirami et al. (2024, Theorem 3) estimate of KL(pi_BoN || pi_ref), one term per best-of-n draw y.

    (1-e)^n [log n + (n-1) log(1-e) - (n-1)/n] + (1-(1-e)^n) log((1-(1-e)^n)/e),  e = pi_ref(y).
    Averaged over best-of-n draws it estimates the KL; each term lies in [0, log n - (n-1)/n].
    """
    eps = np.asarray(eps, np.float64)
    tail = (1.0 - eps) ** n
    # (1-e)^n (n-1) log(1-e) written with xlogy so that e = 1 gives its limit 0.
    first = tail * (np.log(n) - (n - 1) / n) + (n - 1) * (1.0 - eps) ** (n - 1) * xlogy(1.0 - eps, 1.0 - eps)
    return np.asarray(first + (1.0 - tail) * np.log((1.0 - tail) / eps))

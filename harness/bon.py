"""Best-of-n distributions: exact (with ties) and estimated from a pool of reference samples.

Notation (docs/formulas.md, "Notation"): pi_ref the reference policy, r the proxy reward,
F<(y) = P_{z~pi_ref}(r(z) < r(y)), F<=(y) likewise with <=, [y] the outcomes whose reward equals r(y).

Also the exact distributions of the best-of-n variants that pick one of n reference samples by another rule:
soft best-of-n (Verdun et al. 2025) and regularized best-of-n (Jinnai et al. 2024).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp


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


def bon_log_ratio(p_ref: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """log pi_n(y)/pi_ref(y) of `bon_distribution`, in log space, so that it stays finite where pi_n(y) underflows
    (large n, low rewards: F<=^n below the smallest float):

        log pi_n(y)/pi_ref(y) = n log F<=(y) + log(1 - (F<(y)/F<=(y))^n) - log pi_ref([y])."""
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    f_lt, f_le = reward_cdfs(p_ref, rewards)
    with np.errstate(divide="ignore"):
        log_lt, log_le = np.log(f_lt), np.log(f_le)
        return np.asarray(n * log_le + np.log(-np.expm1(n * (log_lt - log_le))) - np.log(f_le - f_lt))


def pool_weights(m: int, n: int) -> np.ndarray:
    """Weights w_i, i = 1..m, of the i-th smallest of m pooled samples being the best of a random n-subset.

    w_i = C(i-1, n-1) / C(m, n) for i >= n, else 0. Then sum_i w_i g(y_(i)) is an unbiased estimate of
    E[g(best of n)] for every n <= m (the U-statistic over all n-subsets of the pool; Nakano et al. 2021,
    WebGPT appendix).
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


def softbon_distribution(p_ref: np.ndarray, rewards: np.ndarray, n: int, lam: float, step: float = 0.1) -> np.ndarray:
    """Exact output distribution of soft best-of-n (Verdun et al. 2025): draw n i.i.d. from p_ref, return y_i with
    probability w(y_i) / sum_j w(y_j), w = exp(r / lam).

    pi(y) = n pi_ref(y) E[w(y) / (w(y) + S)], S the sum of w over n-1 further draws. Writing 1/x as
    int_0^inf exp(-t x) dt turns the expectation over the n-1 draws into a power of the Laplace transform
    phi(t) = E_{z~pi_ref} exp(-t w(z)) = sum_k q_k exp(-t w_k) over the reward levels k of mass q_k:
        pi(y) = n pi_ref(y) int_0^inf w(y) exp(-t w(y)) phi(t)^(n-1) dt.
    The integral is taken over s = log t on a uniform grid of spacing `step` in log space (the rectangle rule,
    which converges exponentially fast on this smooth, doubly-exponentially decaying integrand: spacings 0.1 and
    0.02 agree to 1e-12 on toy and on a continuous law, from n = 2 to 1000 and lambda = 0.01 to 50), with
    w scaled by exp(-max r / lam), which leaves the choice unchanged. lam -> 0 gives best-of-n with random tie
    breaking (`bon_distribution`); lam -> inf gives p_ref.
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if not lam > 0:
        raise ValueError(f"lambda must be > 0, got {lam}")
    p_ref = np.asarray(p_ref, np.float64)
    levels, group = np.unique(np.asarray(rewards, np.float64), return_inverse=True)
    q = np.bincount(group, weights=p_ref, minlength=len(levels))
    if n == 1:
        return p_ref.copy()
    log_w = (levels - levels.max()) / lam  # <= 0, the top level at 0
    keep = q > 0
    acc = _log_integral(q[keep], log_w[keep], n, log_w[keep], step)
    level_mass = np.zeros(len(levels))
    level_mass[keep] = np.exp(np.log(n) + np.log(q[keep]) + acc + np.log(step))
    out = np.zeros_like(p_ref)
    nz = q[group] > 0
    out[nz] = p_ref[nz] / q[group][nz] * level_mass[group][nz]
    return out


def _log_integral(q: np.ndarray, log_w: np.ndarray, n: int, query: np.ndarray, step: float) -> np.ndarray:
    """log int_0^inf w exp(-t w) phi(t)^(n-1) dt / step, for each log w in `query`, with phi the Laplace transform
    of the law putting mass q_k on w_k (see `softbon_distribution`), on the log-t grid of spacing `step`.

    q: shape (K,), one law for every query, or (len(query), K), a law for each query."""
    # Below s = -log n - 50 the integrand is < exp(-50) of its mass; above -log w + 6 it is < exp(-400).
    grid = np.arange(-np.log(n) - 50.0, -min(log_w.min(), query.min()) + 6.0 + step, step)
    laws = np.atleast_2d(q)
    acc = np.full(len(query), -np.inf)
    rows = max(256, 4_000_000 // (len(log_w) + len(query)))  # grid points per chunk, a few tens of MB at most
    with np.errstate(over="ignore", divide="ignore"):
        for chunk in np.array_split(grid, -(-len(grid) // rows)):
            log_phi = np.log(np.exp(-np.exp(chunk[:, None] + log_w[None, :])) @ laws.T)  # (grid, 1 or queries)
            t_w = np.exp(chunk[:, None] + query[None, :])  # t w for each queried w
            log_f = query[None, :] + chunk[:, None] - t_w + (n - 1) * log_phi
            acc = np.logaddexp(acc, logsumexp(log_f, axis=0))
    return acc


def softbon_log_ratio(
    rewards: np.ndarray, reference_rewards: np.ndarray, n: int, lam: float, step: float = 0.1
) -> np.ndarray:
    """log pi(y) / pi_ref(y) of soft best-of-n for outputs of the given rewards, with pi_ref's reward law taken as
    the empirical law of `reference_rewards`: shape (L,), one law for every output, or (len(rewards), L), a law
    for each output (row j for output j):
        log pi(y)/pi_ref(y) = log n + log int_0^inf w(y) exp(-t w(y)) phi(t)^(n-1) dt  (`softbon_distribution`).

    Exact where the law is pi_ref's (an enumerated support, weighted). From L reference samples it is a plug-in
    estimate, and its mean over soft best-of-n's outputs estimates the KL: with samples independent of the
    output, the estimate's bias is that of a log of a ratio estimated from L samples, O(1/L) (Jensen); samples
    that include the output's own candidates bias it upward, and more so as n grows (docs/formulas.md).
    """
    if not lam > 0:
        raise ValueError(f"lambda must be > 0, got {lam}")
    rewards, reference = np.asarray(rewards, np.float64), np.asarray(reference_rewards, np.float64)
    if reference.ndim == 2 and len(reference) != len(rewards):
        raise ValueError(f"one reward law per output: {len(rewards)} outputs, {len(reference)} laws")
    if n == 1:
        return np.zeros(len(rewards))
    levels, inverse = np.unique(reference, return_inverse=True)
    laws = np.zeros((len(reference) if reference.ndim == 2 else 1, len(levels)))
    np.add.at(laws, (np.arange(len(laws)).repeat(reference.shape[-1]), inverse.ravel()), 1.0 / reference.shape[-1])
    top = max(levels.max(), rewards.max())
    acc = _log_integral(laws if reference.ndim == 2 else laws[0], (levels - top) / lam, n, (rewards - top) / lam, step)
    return np.log(n) + acc + np.log(step)


def softmax_choice(rewards: np.ndarray, lam: float, rng: np.random.Generator) -> np.ndarray:
    """Index along the last axis drawn with probability softmax(r / lam) (soft best-of-n's pick)."""
    logits = np.asarray(rewards, np.float64) / lam
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(cdf.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.minimum((cdf < u).sum(axis=-1), cdf.shape[-1] - 1)


def rbon_scores(rewards: np.ndarray, log_p_ref: np.ndarray, beta: float) -> np.ndarray:
    """Regularized best-of-n's score r(y) + beta log pi_ref(y) (Jinnai et al. 2024, the KL-regularized RBoN:
    argmax_y r(y) - beta KL(1_y || pi_ref) over the n samples, in which KL(1_y || pi_ref) = -log pi_ref(y)).
    With beta = 0 it is the reward itself, so that rbon is best-of-n."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    rewards = np.asarray(rewards, np.float64)
    return rewards if beta == 0 else rewards + beta * np.asarray(log_p_ref, np.float64)


def rbon_distribution(p_ref: np.ndarray, rewards: np.ndarray, n: int, beta: float) -> np.ndarray:
    """Exact output distribution of regularized best-of-n: best-of-n (ties at random) of the score
    `rbon_scores`, i.e. `bon_distribution` with the score in place of the reward."""
    p_ref = np.asarray(p_ref, np.float64)
    with np.errstate(divide="ignore"):
        return bon_distribution(p_ref, rbon_scores(rewards, np.log(p_ref), beta), n)

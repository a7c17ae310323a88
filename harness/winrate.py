"""Win rate against the reference policy: P(r(y) > r(z)) + 0.5 P(r(y) = r(z)), y ~ pi, z ~ pi_ref."""

from __future__ import annotations

import numpy as np

from harness.bon import reward_cdfs


def win_rate_exact(p: np.ndarray, p_ref: np.ndarray, rewards: np.ndarray) -> float:
    """sum_y p(y) [F<(y) + 0.5 (F<=(y) - F<(y))] over an enumerated outcome space."""
    f_lt, f_le = reward_cdfs(p_ref, rewards)
    return float(np.sum(np.asarray(p, np.float64) * 0.5 * (f_lt + f_le)))


def win_rate_terms(rewards: np.ndarray, ref_rewards: np.ndarray) -> np.ndarray:
    """Per-sample win rate of each method sample against all held-out reference samples of its prompt.

    Averaging over all pairs (rather than one reference sample per output) is the same unbiased estimate
    with lower variance.
    """
    ref = np.sort(np.asarray(ref_rewards, np.float64))
    r = np.asarray(rewards, np.float64)
    below = np.searchsorted(ref, r, side="left")
    below_or_equal = np.searchsorted(ref, r, side="right")
    return np.asarray(0.5 * (below + below_or_equal) / len(ref))

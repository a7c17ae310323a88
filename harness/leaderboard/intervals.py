"""95% intervals of a leaderboard row over its seeds that never leave the metric's range.

Each run stores its metric's mean over prompts and a percentile-bootstrap 95% interval over prompts
(harness.stats.summarize). A row averages the runs of several seeds. Its interval is a bootstrap over seeds and
prompts: seeds are resampled with replacement (percentile bootstrap, Efron & Tibshirani 1993, ch. 13), each
resampled seed carrying its own interval over prompts; the row's interval runs from the 2.5th percentile of the
resamples' mean lower bound to the 97.5th percentile of their mean upper bound. Every bound is an average of
bounds that lie in the metric's range, so it stays there, and a diverged seed widens the interval towards its
value instead of pushing a symmetric t-interval past the range. With one seed the interval is that run's
interval over prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 2000


def over_seeds(
    means: Sequence[float], intervals: Sequence[Sequence[float]], bounds: tuple[float, float] = (-np.inf, np.inf)
) -> tuple[float, float, float]:
    """(mean over seeds, lower, upper): the bootstrap over seeds and prompts of the module docstring, with the
    bounds clipped to `bounds` (a k1 KL estimate can be negative on a prompt; the KL itself cannot)."""
    mean = float(np.mean(means))
    lo_s, hi_s = np.asarray(intervals, np.float64).reshape(len(means), 2).T
    if len(means) == 1:
        lo, hi = float(lo_s[0]), float(hi_s[0])
    else:
        rng = np.random.default_rng(0)  # the same rows, the same intervals: published files are reproducible
        pick = rng.integers(0, len(means), size=(N_BOOT, len(means)))
        lo = float(np.percentile(lo_s[pick].mean(axis=1), 2.5))
        hi = float(np.percentile(hi_s[pick].mean(axis=1), 97.5))
    return mean, float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))

"""Uncertainty over prompts: mean, standard error and a bootstrap 95% confidence interval."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A metric's value over prompts, with its standard error and percentile-bootstrap 95% CI."""

    mean: float
    se: float | None  # None with one prompt: no spread to estimate it from
    ci95: tuple[float, float]
    n_prompts: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"ci95": list(self.ci95)}


def summarize(per_prompt: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> Estimate:
    """Summarize per-prompt values: prompts are the unit of resampling (they are what a task samples)."""
    x = np.asarray(per_prompt, np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"expected a non-empty 1-d array of per-prompt values, got shape {x.shape}")
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None
    boot = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Estimate(mean=float(x.mean()), se=se, ci95=(float(lo), float(hi)), n_prompts=len(x))

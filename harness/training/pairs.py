"""Preference pairs for the offline path: the best and worst of random n-subsets of a training prompt's
reference pool, and the log-ratio gap of each pair that the pairwise losses (dpo, bonbon) read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from harness.bon import argmax_random_ties
from harness.policy import Prompt, sequence_logprobs
from harness.pool import Pool
from harness.training.logprobs import sequence_logprob


def pool_extremes(
    rewards: np.ndarray, n: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best and worst of `count` random n-subsets of one prompt's pool (ties broken at random).

    Returns (best, worst, usable): indices into the pool, and whether the subset's rewards differed at all
    (a subset of equal rewards carries no preference)."""
    subsets = np.stack([rng.choice(len(rewards), size=n, replace=False) for _ in range(count)])
    r = rewards[subsets]
    best = subsets[np.arange(count), argmax_random_ties(r, rng)]
    worst = subsets[np.arange(count), argmax_random_ties(-r, rng)]
    return best, worst, r.max(axis=1) > r.min(axis=1)


class PoolPairs:
    """Best-and-worst pairs from n-subsets of the reference pool of the training prompts (dpo: n = 2;
    bonbon: n = 8), with the log-ratio gap h that the pairwise losses read."""

    def __init__(self, pool: Pool, temperature: float = 1.0):
        self.pool, self.temperature = pool, temperature
        self.ref = sequence_logprobs(pool.completions.ref_token_logprobs)  # type: ignore[arg-type]

    def gap(
        self,
        model: Any,
        prompts: Sequence[Prompt],
        n: int,
        count: int,
        rng: np.random.Generator,
        per_token: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, int, list[Prompt]] | None:
        """(h, log pi(y+), tokens, the prompt of each pair) for `count` pairs per prompt, h = [log pi(y+) -
        log pi(y-)] - [log pi_ref(y+) - log pi_ref(y-)] over whole sequences (Azar et al. 2023, Rafailov et al.
        2023); with `per_token`, each completion's log-ratio log pi(y)/pi_ref(y) is divided by its length in tokens
        first, as TRL's IPO loss computes it. None when every drawn subset was a tie."""
        rows, best, worst, ref_gap, ref_best, ref_worst = [], [], [], [], [], []
        for p in prompts:
            i = self.pool.index(p)
            b_ix, w_ix, usable = pool_extremes(self.pool.rewards[i], n, count, rng)
            for b, w in zip(b_ix[usable], w_ix[usable], strict=True):
                rows.append(p)
                best.append(self.pool.completions.tokens[i][b])
                worst.append(self.pool.completions.tokens[i][w])
                ref_gap.append(self.ref[i][b] - self.ref[i][w])
                ref_best.append(self.ref[i][b])
                ref_worst.append(self.ref[i][w])
        if not rows:
            return None
        lp = sequence_logprob(model, rows + rows, best + worst, self.temperature)
        lp_best = lp[: len(rows)]
        if per_token:
            ref = torch.tensor(ref_best + ref_worst, dtype=lp.dtype, device=lp.device)
            lengths = torch.tensor([max(1, len(c)) for c in best + worst], dtype=lp.dtype, device=lp.device)
            ratio = (lp - ref) / lengths
            h = ratio[: len(rows)] - ratio[len(rows) :]
        else:
            h = lp_best - lp[len(rows) :] - torch.tensor(ref_gap, dtype=lp.dtype, device=lp.device)
        return h, lp_best, sum(map(len, best + worst)), rows

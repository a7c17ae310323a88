"""Independent random streams derived from one run seed, so that adding a stream never shifts another."""

from __future__ import annotations

import numpy as np

# The named streams of a run; numbers are fixed forever (changing one changes stored results).
MAX_SEED = 2**32 - 1  # seeds are 32-bit: numpy's SeedSequence takes no negative entropy

OUTPUTS, HELD_OUT, BOOTSTRAP, POOL, TIES, TRAIN_POOL, TRAIN, OFFTARGET = 1, 2, 3, 4, 5, 6, 7, 8


def derive_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed for the given stream of `seed` (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])

"""Independent random streams derived from one run seed, so that adding a stream never shifts another."""

from __future__ import annotations

import numpy as np

# The named streams of a run; numbers are fixed forever (changing one changes stored results).
MAX_SEED = 2**32 - 1  # seeds are 32-bit: numpy's SeedSequence takes no negative entropy

OUTPUTS, HELD_OUT, BOOTSTRAP, POOL, TIES, TRAIN_POOL, TRAIN, OFFTARGET = 1, 2, 3, 4, 5, 6, 7, 8

# The sub-streams of one training step (of one phase, for iterative BOND's anchor pool), each read by `step_seed`:
# derive_seed(seed, TRAIN, step, number). Fixed forever too.
STEP_STREAMS = {
    "anchor_pool": 0,  # bond: the pool drawn from the anchor at the start of a phase
    "bond_forward": 1,  # bond: the best-of-n groups of the forward (SFT) term
    "anchor_pairs": 2,  # jbond: the two anchor samples per policy sample
    "jbond_forward": 3,  # jbond: the tie breaks of the best of each pair
    "probe": 4,  # the trainer's probe of reward and KL on a path that trains without sampling
}
# The two generators of a selection policy's draw (harness.selection), np.random.default_rng([seed, number]).
PICK, CANDIDATES = 1, 2


def derive_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed for the given stream of `seed` (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def step_seed(seed: int, step: int, name: str | None = None) -> int:
    """The seed of training step `step` (its samples, its pairs), or of its sub-stream `name` of STEP_STREAMS."""
    return derive_seed(seed, TRAIN, step, *(() if name is None else (STEP_STREAMS[name],)))

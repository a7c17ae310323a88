"""The number of threads of a run's torch computations, fixed so that a run's numbers do not depend on how many
cores the machine has (docs/reproducibility.md).

On the CPU, some of torch's kernels split a sum over their threads and add the partial sums in an order that
depends on the thread count: MKL's matrix products choose how to partition a product by the thread count (the
sampling passes with a KV cache and the gradients of weight matrices, where the summed dimension is the batch's
tokens), and the LayerNorm backward pass sums the weight and bias gradients in one buffer per thread. The rounding
then differs in the last bits, and over a training run (and where a sampled token sits on a boundary) the
difference grows to the second decimal of a metric. Every run therefore computes with one thread (the thread count
under which the published boards were computed) unless `BON_HARNESS_THREADS` says otherwise, and a run at any
other thread count carries it in its identity, so that it never shares a name with a run at one thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from harness.task import ConfigError

ENV = "BON_HARNESS_THREADS"
DEFAULT = 1  # implicit in a run's identity; any other count is part of it
MAX_THREADS = 1024


def run_threads() -> int:
    """The thread count of runs: `BON_HARNESS_THREADS` where set (a whole number from 1 to 1024), else 1."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT
    if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
        raise ConfigError(f"{ENV}={text!r}: the thread count of runs is a whole number from 1 to {MAX_THREADS}")
    return int(text)


@contextmanager
def pinned(threads: int) -> Iterator[None]:
    """Torch's intra-op thread count (MKL's and OpenMP's with it) set to `threads` inside the block, then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)

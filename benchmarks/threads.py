"""What one torch thread costs against two, and whether the numbers depend on the thread count, on the `imdb`
task's model (SmolLM2-135M, fp32 on the CPU): sampling, scoring, and one LoRA training step (forward and backward
pass over the rollout), each at 1 and at 2 threads, timed in alternation so that a load from other processes
falls on both alike. Runs compute with one thread (harness.threads, docs/reproducibility.md).

    python benchmarks/threads.py --repeats 3
    MKL_CBWR=AVX2,STRICT python benchmarks/threads.py   # MKL's strict reproducible mode: equal at 1 and 2 threads
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from harness.task import build_task, load_task
from harness.training.logprobs import completion_forward


def timed(threads: int, work: Callable[[], Any]) -> tuple[float, Any]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    out = work()
    return time.perf_counter() - t0, out


def same(a: Any, b: Any) -> bool:
    """Bitwise equality of nested lists of arrays or tensors."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8, help="Samples per prompt.")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    task = build_task(load_task("imdb"))
    prompts = task.train_prompts[: args.prompts]
    rollout = task.reference.sample(prompts, args.samples, 0)
    rows = [p for p in prompts for _ in range(args.samples)]
    comps = [c for row in rollout.tokens for c in row]
    torch.manual_seed(0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    model = get_peft_model(copy.deepcopy(task.model), lora).eval()
    with torch.no_grad():  # adapters away from 0, as after a few steps, so that every gradient is non-zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)

    def train_step() -> list[torch.Tensor]:
        m = copy.deepcopy(model)
        lp, _, mask = completion_forward(m, None, rows, comps)
        (-(lp.sum(1) * torch.linspace(-1, 1, len(rows))).sum() / mask.sum()).backward()
        return [p.grad for p in m.parameters() if p.grad is not None]

    work: dict[str, Callable[[], Any]] = {
        "sampling": lambda: task.reference.sample(prompts, args.samples, 1).token_logprobs,
        "scoring": lambda: task.reference.token_logprobs(prompts, rollout.tokens),
        "LoRA step": train_step,
    }
    print(f"MKL_CBWR={os.environ.get('MKL_CBWR', '(unset)')}; {len(rows)} sequences; median of {args.repeats}")
    print(f"{'':10} {'1 thread':>9} {'2 threads':>9} {'speed-up':>8}  same numbers")
    for name, fn in work.items():
        times: dict[int, list[float]] = {1: [], 2: []}
        outs: dict[int, Any] = {}
        for _ in range(args.repeats):
            for threads in (1, 2):
                seconds, outs[threads] = timed(threads, fn)
                times[threads].append(seconds)
        one, two = (float(np.median(times[t])) for t in (1, 2))
        print(f"{name:10} {one:8.2f}s {two:8.2f}s {one / two:7.2f}x  {same(outs[1], outs[2])}")


if __name__ == "__main__":
    main()

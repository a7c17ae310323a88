"""The best-of-n curve from one reference pool against resampling best-of-n afresh for each n.

Both estimate E[proxy reward of best-of-n] for n = 1, 2, 4, ..., M. The pool draws M samples per prompt once
and reads every n from them (harness.bon.pool_weights); resampling draws n candidates per output for each n.
On `toy` both are compared with the exact values (root-mean-square error over repetitions); on `imdb` the
cost in samples and wall-clock seconds is measured.

    python benchmarks/bon_curve.py --task toy --m 64 --repeats 200
    python benchmarks/bon_curve.py --task imdb --m 64 --prompts 4 --outputs 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness import bon
from harness.methods.bon import BoNPolicy
from harness.policy import EnumerablePolicy, enumerate_prompt
from harness.task import build_task, load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="toy")
    ap.add_argument("--m", type=int, default=64, help="pool size = largest n")
    ap.add_argument("--prompts", type=int, default=None, help="first K prompts of the task (all by default)")
    ap.add_argument("--outputs", type=int, default=1, help="resampling: best-of-n outputs per prompt and n")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    task = build_task(load_task(args.task))
    prompts = task.prompts[: args.prompts] if args.prompts else task.prompts
    ns = [1 << k for k in range(args.m.bit_length()) if 1 << k <= args.m]
    policies = {n: BoNPolicy(task.reference, task.reward, n) for n in ns}
    exact = None
    if isinstance(task.reference, EnumerablePolicy):
        exact = {}
        for n in ns:
            vals = []
            for p in prompts:
                e = enumerate_prompt(task.reference, task.reward, p)
                vals.append(bon.bon_distribution(e.p_ref, e.rewards, n) @ e.rewards)
            exact[n] = float(np.mean(vals))

    pool_est: dict[int, list[float]] = {n: [] for n in ns}
    fresh_est: dict[int, list[float]] = {n: [] for n in ns}
    seconds = {"pool": 0.0, "resample": 0.0}
    for rep in range(args.repeats):
        rng = np.random.default_rng(rep)
        t0 = time.perf_counter()
        pool = task.reference.sample(prompts, args.m, seed=10_000 + rep)
        rewards = task.reward.score(prompts, pool)
        orders = [bon.pool_order(r, rng) for r in rewards]
        for n in ns:
            w = bon.pool_weights(args.m, n)
            pool_est[n].append(float(np.mean([w @ r[o] for r, o in zip(rewards, orders, strict=True)])))
        seconds["pool"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for n in ns:
            out = policies[n].generate(prompts, args.outputs, seed=20_000 + rep)
            fresh_est[n].append(float(np.mean(np.concatenate(task.reward.score(prompts, out)))))
        seconds["resample"] += time.perf_counter() - t0

    samples = {"pool": args.m, "resample": args.outputs * sum(ns)}
    print(f"task {args.task}: {len(prompts)} prompts, n = {ns}, {args.repeats} repetition(s)")
    print(
        "| method | samples per prompt | seconds per curve |" + (" RMSE of E[reward] vs exact, by n |" if exact else "")
    )
    print("|---|---:|---:|" + ("---|" if exact else ""))
    for name, est in (("pool", pool_est), ("resample", fresh_est)):
        row = f"| {name} | {samples[name]} | {seconds[name] / args.repeats:.2f} |"
        if exact:
            rmse = [np.sqrt(np.mean((np.asarray(est[n]) - exact[n]) ** 2)) for n in ns]
            row += " " + ", ".join(f"{n}: {e:.3f}" for n, e in zip(ns, rmse, strict=True)) + " |"
        print(row)
    if not exact:
        print(
            "estimates by n (pool | resample): "
            + ", ".join(f"{n}: {pool_est[n][0]:.3f} | {fresh_est[n][0]:.3f}" for n in ns)
        )


if __name__ == "__main__":
    main()

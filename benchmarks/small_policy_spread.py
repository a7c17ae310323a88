"""How widely the proxy reward spreads under the small policy of `imdb-small` and under SmolLM2-135M-Instruct of
`imdb`, on the same review prefixes: the room that best-of-n has to climb (README, "The small policy").

    python benchmarks/small_policy_spread.py --out runs

The prompts are the `imdb` task's evaluation prompts (review prefixes cut with SmolLM2's tokenizer). SmolLM2's
samples are that task's reference pool (M per prompt, seed 0: reused from the store `--out` where it is there,
else sampled and cached in it); the small policy samples M completions of the same prefixes, re-tokenized with its
own tokenizer, with the generation settings of `imdb-small` (those of `imdb`). Both are scored by the same proxy
and gold rewards. Printed per policy, as means over prompts: the proxy and gold rewards, the within-prompt
standard deviation of the proxy reward, and best-of-n's expected proxy reward above the mean for n = 4, 16 and
64 (the unbiased pool estimator, harness.bon.pool_bon_mean), with the sampling time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from harness import bon
from harness.policy import Prompt
from harness.pool import PoolCache
from harness.task import build_task, load_task


def summary(rewards: list[np.ndarray], gold: list[np.ndarray], rng: np.random.Generator) -> dict[str, float]:
    out = {
        "proxy": float(np.mean([r.mean() for r in rewards])),
        "gold": float(np.mean([g.mean() for g in gold])),
        "proxy sd within prompt": float(np.mean([r.std(ddof=1) for r in rewards])),
    }
    for n in (4, 16, 64):
        if n <= len(rewards[0]):
            gains = [bon.pool_bon_mean(r, r, n, rng) - r.mean() for r in rewards]
            out[f"best-of-{n} gain"] = float(np.mean(gains))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs"), help="results store holding (or caching) the pools")
    ap.add_argument("--m", type=int, default=64, help="samples per prompt")
    args = ap.parse_args()

    imdb = build_task(load_task("imdb"))
    t0 = time.perf_counter()
    pool = PoolCache(args.out).get(imdb, args.m, 0)
    smol_seconds = time.perf_counter() - t0

    small = build_task(load_task("imdb-small"))
    tokenizer = small.reference.tokenizer  # type: ignore[attr-defined]
    prompts = [
        Prompt(id=p.id, text=p.text, tokens=tuple(tokenizer(p.text, add_special_tokens=False).input_ids))
        for p in imdb.prompts
    ]
    t0 = time.perf_counter()
    c = small.reference.sample(prompts, args.m, seed=0)
    small_seconds = time.perf_counter() - t0
    rewards, gold = small.reward.score(prompts, c), small.gold_reward.score(prompts, c)  # type: ignore[union-attr]

    rng = np.random.default_rng(0)
    rows = {
        "SmolLM2-135M-Instruct (imdb)": summary(pool.rewards, pool.gold or [], rng) | {"seconds": smol_seconds},
        "small policy (imdb-small)": summary(rewards, gold, rng) | {"seconds": small_seconds},
    }
    print(f"{len(prompts)} prompts of imdb, {args.m} samples each")
    names = list(next(iter(rows.values())))
    print("| policy | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for policy, values in rows.items():
        print(f"| {policy} | " + " | ".join(f"{values[k]:.3f}" for k in names) + " |")
    print("\nA few of the small policy's samples:")
    for i in range(0, len(prompts), max(1, len(prompts) // 6)):
        print(f"  [{prompts[i].text}]{c.text[i][0]}")


if __name__ == "__main__":
    main()

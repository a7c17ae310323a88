"""Compare the best-of-n curves of two stored runs (e.g. the same config sampled by `hf` and by `vllm`).

The two backends draw different random streams, so their curves agree only in distribution: for each n (powers of
two and the largest) this prints both means with their bootstrap 95% intervals over prompts, and whether the
intervals overlap.

    python benchmarks/compare_curves.py runs-hf/imdb/bon/<hash> runs-vllm/imdb-vllm/bon/<hash> --metric reward
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="a run directory")
    ap.add_argument("b", type=Path, help="another run directory")
    ap.add_argument("--metric", nargs="+", default=["reward", "gold_reward", "win_rate"])
    args = ap.parse_args()
    runs = [json.loads((p / "results.json").read_text()) for p in (args.a, args.b)]
    names = [r["task"].get("backend") or r["task"]["name"] for r in runs]
    curves = [{p["n"]: p for p in r["bon_curve"]} for r in runs]
    top = min(max(c) for c in curves)
    ns = [n for n in sorted(curves[0]) if n <= top and (n & (n - 1) == 0 or n == top)]
    for metric in args.metric:
        print(f"\n{metric}: {names[0]} vs {names[1]}")
        print(f"| n | {names[0]} | {names[1]} | intervals overlap |")
        print("|---:|---|---|:---:|")
        overlaps = 0
        for n in ns:
            cells, bounds = [], []
            for c in curves:
                v = c[n][metric]
                lo, hi = v["ci95"]
                cells.append(f"{v['mean']:.3f} [{lo:.3f}, {hi:.3f}]")
                bounds.append((lo, hi))
            overlap = bounds[0][0] <= bounds[1][1] and bounds[1][0] <= bounds[0][1]
            overlaps += overlap
            print(f"| {n} | {cells[0]} | {cells[1]} | {'yes' if overlap else 'no'} |")
        print(f"{overlaps} of {len(ns)} intervals overlap")


if __name__ == "__main__":
    main()

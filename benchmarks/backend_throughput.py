"""Sampling throughput of the `hf` and `vllm` backends on a task's reference pool, with and without start-up.

Each backend samples the task's pool (its evaluation prompts x `pool_size` samples x `max_new_tokens`) with the
task's settings, as `harness run` does. Start-up is loading the transformers model (`hf`) and, for `vllm`, also
starting vLLM's engine (the settings of `harness.backends.vllm_settings`, or `--compiled`). Tokens are the sampled
completion tokens (up to and including EOS).

    python benchmarks/backend_throughput.py --task imdb
    python benchmarks/backend_throughput.py --task aclsum --backends vllm --compiled
"""

from __future__ import annotations

import argparse
import time

from harness.backends import BackendParams, load_policy
from harness.task import build_task, load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="imdb")
    ap.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    ap.add_argument("--compiled", action="store_true", help="vllm: torch.compile the model (enforce_eager=False).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    config = load_task(args.task)
    task = build_task(config.model_copy(update={"params": config.params | {"backend": "hf"}}))
    prompts, m = task.prompts, config.evaluation.pool_size
    prompt_tokens = sum(len(p.tokens) for p in prompts) / len(prompts)
    print(
        f"task {args.task}: {len(prompts)} prompts (mean {prompt_tokens:.0f} tokens) x {m} samples x "
        f"{config.generation.max_new_tokens} new tokens"
    )
    print("| backend | start-up s | sampling s | tokens | tok/s | tok/s with start-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend in args.backends:
        params = config.params | {"backend": backend}
        if backend == "vllm" and args.compiled:
            params["enforce_eager"] = False
        t0 = time.perf_counter()
        policy = load_policy(task_policy_path(task), config.generation, BackendParams.model_validate(params)).reference
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        c = policy.sample(prompts, m, args.seed)
        seconds = time.perf_counter() - t1
        tokens = sum(len(t) for row in c.tokens for t in row)
        name = backend + (" (compiled)" if backend == "vllm" and args.compiled else "")
        print(
            f"| {name} | {startup:.1f} | {seconds:.1f} | {tokens} | {tokens / seconds:.0f} | "
            f"{tokens / (seconds + startup):.0f} |",
            flush=True,
        )
        if backend == "vllm":
            from harness.backends import vllm

            vllm.shutdown()


def task_policy_path(task) -> str:  # type: ignore[no-untyped-def]
    """The directory the task's transformers policy was loaded from."""
    return str(task.model.config._name_or_path)


if __name__ == "__main__":
    main()

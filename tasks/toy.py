"""Builder of the toy task: a tiny seeded GPT-2 whose completions are all enumerated once, up front."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import torch
from pydantic import Field, model_validator
from transformers import GPT2Config, GPT2LMHeadModel

from harness.policy import Completions, Prompt
from harness.seeding import MAX_SEED
from harness.task import StrictModel, Task, TaskConfig

MAX_TABLE = 1_000_000  # prompts listed, and completions tabulated over all prompts: the task enumerates both


class ToyParams(StrictModel):
    seed: int = Field(0, ge=0, le=MAX_SEED)
    vocab_size: int = Field(6, ge=2, le=16)
    prompt_length: int = Field(3, ge=1, le=16)
    completion_length: int = Field(3, ge=1, le=5)
    n_prompts: int = Field(8, ge=1)
    init_std: float = Field(0.4, gt=0, le=10, description="Std of the GPT-2's initial weights (logits grow with it).")
    token_rewards: list[Annotated[float, Field(ge=-1e6, le=1e6)]]

    @model_validator(mode="after")
    def _check(self) -> ToyParams:
        if len(self.token_rewards) != self.vocab_size:
            raise ValueError(f"token_rewards has {len(self.token_rewards)} entries, vocab_size is {self.vocab_size}")
        prompts = self.vocab_size**self.prompt_length
        if prompts > MAX_TABLE:
            raise ValueError(f"vocab_size ** prompt_length = {prompts} prompts to list (at most {MAX_TABLE})")
        if self.n_prompts > prompts:
            raise ValueError(f"n_prompts={self.n_prompts} exceeds the {prompts} prompts")
        table = self.n_prompts * self.vocab_size**self.completion_length
        if table > MAX_TABLE:
            raise ValueError(
                f"n_prompts * vocab_size ** completion_length = {table} completions to tabulate (at most {MAX_TABLE})"
            )
        return self


def _text(tokens: Sequence[int]) -> str:
    return " ".join(f"t{t}" for t in tokens)


class ToyPolicy:
    """A causal LM over a tiny vocabulary whose per-token log-probabilities are tabulated for every completion.

    Sampling draws whole completions from the tabulated distribution, which is exactly the distribution of
    token-by-token ancestral sampling at temperature 1.
    """

    def __init__(self, model: GPT2LMHeadModel, prompts: Sequence[Prompt], vocab_size: int, length: int):
        self.completions = list(itertools.product(range(vocab_size), repeat=length))
        self._index = {c: i for i, c in enumerate(self.completions)}
        comp = torch.tensor(self.completions)
        self.table: dict[
            tuple[int, ...], np.ndarray
        ] = {}  # per prompt: the per-token log-probabilities of every completion
        with torch.no_grad():
            for p in prompts:
                ids = torch.cat([torch.tensor(p.tokens).expand(len(comp), -1), comp], dim=1)
                logits = model(ids).logits[:, len(p.tokens) - 1 : -1].double().log_softmax(-1)
                self.table[p.tokens] = logits.gather(-1, comp.unsqueeze(-1)).squeeze(-1).numpy()

    def _probs(self, prompt: Prompt) -> np.ndarray:
        p = np.exp(self.table[prompt.tokens].sum(axis=1))
        return p / p.sum()

    def _rows(self, prompts: Sequence[Prompt]) -> Completions:
        """Every completion of each prompt, one row per prompt."""
        lps = [list(self.table[p.tokens]) for p in prompts]
        return Completions(
            tokens=[list(self.completions) for _ in prompts],
            text=[[_text(c) for c in self.completions] for _ in prompts],
            token_logprobs=lps,
        )

    def support(self, prompt: Prompt) -> Completions:
        return self._rows([prompt])

    def sample(self, prompts: Sequence[Prompt], n: int, seed: int) -> Completions:
        rng = np.random.default_rng(seed)
        return self._rows(prompts).take([rng.choice(len(self.completions), size=n, p=self._probs(p)) for p in prompts])

    def token_logprobs(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[list[np.ndarray]]:
        return [
            [self.table[p.tokens][self._index[tuple(c)]] for c in row] for p, row in zip(prompts, tokens, strict=True)
        ]


class TokenWeightReward:
    """r(y) = sum_t w[y_t]: deterministic, with many ties."""

    label = "sum of per-token weights"

    def __init__(self, weights: Sequence[float]):
        self.weights = np.asarray(weights, np.float64)

    def score(self, prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]:
        return [np.array([self.weights[list(c)].sum() for c in row]) for row in completions.tokens]


def build_model(params: ToyParams) -> GPT2LMHeadModel:
    torch.manual_seed(params.seed)
    config = GPT2Config(
        vocab_size=params.vocab_size,
        n_positions=params.prompt_length + params.completion_length,
        n_embd=16,
        n_layer=2,
        n_head=2,
        initializer_range=params.init_std,
        bos_token_id=None,
        eos_token_id=None,
    )
    return GPT2LMHeadModel(config).eval()


def build(config: TaskConfig) -> Task:
    params = ToyParams.model_validate(config.params)
    gen = config.generation
    if (gen.max_new_tokens, gen.temperature, gen.top_k, gen.top_p) != (params.completion_length, 1.0, 0, 1.0):
        raise ValueError(
            f"the toy task samples whole completions of params.completion_length={params.completion_length} "
            f"tokens at temperature 1 without filtering; got generation={gen.model_dump()}"
        )
    rng = np.random.default_rng(params.seed)
    all_prompts = list(itertools.product(range(params.vocab_size), repeat=params.prompt_length))
    chosen = sorted(rng.choice(len(all_prompts), size=params.n_prompts, replace=False))
    prompts = [Prompt(id=f"toy-{i}", text=_text(all_prompts[j]), tokens=all_prompts[j]) for i, j in enumerate(chosen)]
    model = build_model(params)

    def make_policy(m: GPT2LMHeadModel) -> ToyPolicy:
        return ToyPolicy(m, prompts, params.vocab_size, params.completion_length)

    return Task(
        config=config,
        prompts=prompts,
        train_prompts=prompts,  # the toy task is solved exactly on its prompts: training and evaluation share them
        reference=make_policy(model),
        reward=TokenWeightReward(params.token_rewards),
        model=model,
        make_policy=make_policy,
    )

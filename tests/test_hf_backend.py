"""The `hf` backend on a tiny random GPT-2: seeded sampling, logprobs while sampling == scoring, padding, EOS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from harness.backends.hf import HFPolicy
from harness.policy import Prompt
from harness.task import GenerationConfig

EOS = 1


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    vocab = {f"w{i}": i for i in range(40)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="w1")
    config = GPT2Config(
        vocab_size=40,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=None,
        eos_token_id=EOS,
        initializer_range=0.2,
    )
    return GPT2LMHeadModel(config), tokenizer


PROMPTS = [Prompt("a", "w3 w4", (3, 4)), Prompt("b", "w5 w6 w7 w8 w9", (5, 6, 7, 8, 9)), Prompt("c", "w10", (10,))]


@pytest.mark.parametrize(
    "generation",
    [GenerationConfig(max_new_tokens=10), GenerationConfig(max_new_tokens=10, temperature=0.7, top_k=8, top_p=0.9)],
)
def test_logprobs_while_sampling_equal_scoring(tiny, generation):
    policy = HFPolicy(*tiny, generation, batch_size=5)
    s = policy.sample(PROMPTS, 6, seed=0)
    scored = policy.logprob(PROMPTS, s.tokens)
    for row_s, row_t, row_c in zip(s.token_logprobs, scored, s.tokens, strict=True):
        for a, b, toks in zip(row_s, row_t, row_c, strict=True):
            assert len(a) == len(toks)
            np.testing.assert_allclose(a, b, atol=1e-4)
            assert np.all(np.isfinite(a)) and np.all(a <= 0)


def test_same_seed_same_samples(tiny):
    policy = HFPolicy(*tiny, GenerationConfig(max_new_tokens=8), batch_size=4)
    a, b, c = (policy.sample(PROMPTS, 5, seed=s) for s in (1, 1, 2))
    assert a.tokens == b.tokens and a.text == b.text
    assert a.tokens != c.tokens
    assert [len(row) for row in a.tokens] == [5, 5, 5]


def test_padding_does_not_change_logprobs(tiny):
    policy = HFPolicy(*tiny, GenerationConfig(max_new_tokens=8), batch_size=16)
    comp = [[(11, 12, 13)], [(14, 15, 16, 17, 18, 19, 20)], [(21,)]]
    batched = policy.logprob(PROMPTS, comp)
    policy.batch_size = 1
    alone = policy.logprob(PROMPTS, comp)
    for x, y in zip(batched, alone, strict=True):
        np.testing.assert_allclose(x[0], y[0], atol=1e-5)


def test_completions_end_at_the_first_eos(tiny):
    model, tokenizer = tiny
    # Make EOS likely so that some completions stop early.
    bias = torch.zeros(40)
    bias[EOS] = 3.0
    model.lm_head.register_forward_hook(lambda mod, inp, out: out + bias)
    try:
        policy = HFPolicy(model, tokenizer, GenerationConfig(max_new_tokens=12), batch_size=8)
        s = policy.sample(PROMPTS, 8, seed=0)
        lengths = [len(t) for row in s.tokens for t in row]
        assert min(lengths) < 12
        for row in s.tokens:
            for t in row:
                assert EOS not in t[:-1]
                assert len(t) == 12 or t[-1] == EOS
        scored = policy.logprob(PROMPTS, s.tokens)
        for ra, rb in zip(s.token_logprobs, scored, strict=True):
            for a, b in zip(ra, rb, strict=True):
                np.testing.assert_allclose(a, b, atol=1e-4)
    finally:
        model.lm_head._forward_hooks.clear()


class _SmallMemoryGPT2(GPT2LMHeadModel):
    """A real GPT-2 that runs out of memory, as a small GPU would, on batches of more than 2 sequences."""

    def forward(self, input_ids=None, **kwargs):  # type: ignore[override]
        if input_ids is not None and input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated capacity of 2 sequences)")
        return super().forward(input_ids=input_ids, **kwargs)


def test_out_of_memory_halves_the_batch_and_gives_the_same_scores(tiny):
    model, tokenizer = tiny
    small = _SmallMemoryGPT2(model.config)
    small.load_state_dict(model.state_dict())
    comp = [[(11, 12, 13), (14,)], [(15, 16)], [(17, 18, 19, 20)]]
    policy = HFPolicy(small, tokenizer, GenerationConfig(max_new_tokens=4), batch_size=8)
    scored = policy.logprob(PROMPTS, comp)
    assert policy.batch_size == 2
    expected = HFPolicy(model, tokenizer, GenerationConfig(max_new_tokens=4), batch_size=8).logprob(PROMPTS, comp)
    for x, y in zip(scored, expected, strict=True):
        for a, b in zip(x, y, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_out_of_memory_on_one_sequence_is_a_clear_error(tiny):
    model, tokenizer = tiny

    class NoMemory(GPT2LMHeadModel):
        def forward(self, *args, **kwargs):  # type: ignore[override]
            raise torch.OutOfMemoryError("CUDA out of memory")

    policy = HFPolicy(NoMemory(model.config), tokenizer, GenerationConfig(max_new_tokens=4), batch_size=4)
    with pytest.raises(RuntimeError, match="out of memory scoring a single sequence"):
        policy.logprob(PROMPTS[:1], [[(11, 12)]])

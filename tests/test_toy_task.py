"""The toy task is a proper ground truth: enumerable, normalised, clearly non-uniform, with reward ties."""

from __future__ import annotations

import numpy as np

from tests.conftest import support_arrays


def test_support_is_a_normalised_distribution_over_every_completion(toy):
    for i in range(len(toy.prompts)):
        p_ref, rewards = support_arrays(toy, i)
        assert len(p_ref) == 6**3 == len(set(toy.reference.support(toy.prompts[i]).tokens[0]))
        np.testing.assert_allclose(p_ref.sum(), 1.0, atol=1e-9)


def test_reference_is_far_from_uniform_and_reward_has_ties(toy):
    for i in range(len(toy.prompts)):
        p_ref, rewards = support_arrays(toy, i)
        entropy = -(p_ref * np.log(p_ref)).sum()
        assert entropy < 0.9 * np.log(len(p_ref))
        assert len(np.unique(rewards)) < len(rewards) / 10


def test_sampling_is_seeded(toy):
    a = toy.reference.sample(toy.prompts, 16, seed=3)
    b = toy.reference.sample(toy.prompts, 16, seed=3)
    c = toy.reference.sample(toy.prompts, 16, seed=4)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_sampled_logprobs_match_scoring(toy):
    s = toy.reference.sample(toy.prompts[:2], 8, seed=0)
    scored = toy.reference.token_logprobs(toy.prompts[:2], s.tokens)
    for row_a, row_b in zip(s.token_logprobs, scored, strict=True):
        for a, b in zip(row_a, row_b, strict=True):
            np.testing.assert_allclose(a, b)

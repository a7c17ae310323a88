"""Monte Carlo KL estimators and confidence intervals against exact values on the toy task."""

from __future__ import annotations

import numpy as np
import pytest

from harness import kl
from harness.policy import sequence_logprobs
from harness.stats import summarize
from harness.task import load_task
from harness.tasks.toy import ToyParams, ToyPolicy, build_model


def test_k1_and_k3_are_unbiased_for_the_sequence_kl(toy):
    """pi = a second seeded toy model; its exact KL from pi_ref by enumeration is the target of k1 and k3."""
    params = ToyParams.model_validate(load_task("toy").params | {"seed": 1})
    pi = ToyPolicy(build_model(params), toy.prompts, params.vocab_size, params.completion_length)
    for prompt in toy.prompts[:3]:
        exact = kl.kl_exact(
            np.exp(sequence_logprobs(pi.support(prompt).token_logprobs)[0]),
            np.exp(sequence_logprobs(toy.reference.support(prompt).token_logprobs)[0]),
        )
        s = pi.sample([prompt], 20000, seed=2)
        ref = toy.reference.token_logprobs([prompt], s.tokens)
        k1 = kl.kl_k1_terms(sequence_logprobs(s.token_logprobs)[0], sequence_logprobs(ref)[0])
        k3 = kl.kl_k3_terms(s.token_logprobs[0], ref[0])
        assert (k1 < 0).any(), "single k1 terms must stay unclamped"
        assert (k3 >= 0).all()
        for terms in (k1, k3):
            assert abs(terms.mean() - exact) < 4 * terms.std(ddof=1) / np.sqrt(len(terms))


def test_k3_of_a_policy_with_itself_is_zero():
    lp = [np.log([0.2, 0.5]), np.log([0.9])]
    np.testing.assert_allclose(kl.kl_k3_terms(lp, lp), 0.0)


def test_bound_closed_form():
    assert kl.kl_bon_bound(1) == 0.0
    assert kl.kl_bon_bound(4) == pytest.approx(np.log(4) - 0.75)


def test_bootstrap_interval_matches_the_normal_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.0, size=400)
    est = summarize(x, np.random.default_rng(1), n_boot=4000)
    assert est.mean == pytest.approx(x.mean())
    assert est.se == pytest.approx(x.std(ddof=1) / 20)
    lo, hi = est.ci95
    assert lo == pytest.approx(est.mean - 1.96 * est.se, abs=0.2 * est.se)
    assert hi == pytest.approx(est.mean + 1.96 * est.se, abs=0.2 * est.se)


def test_bootstrap_coverage_is_about_95_percent():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(300):
        lo, hi = summarize(rng.exponential(1.0, size=60), rng, n_boot=500).ci95
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 300 <= 0.99


def test_a_task_of_one_prompt_has_no_standard_error_and_its_run_is_stored(tmp_path):
    from pathlib import Path

    import yaml

    from harness.run import execute, resolve
    from harness.task import TASKS

    config = yaml.safe_load(Path(TASKS.target("toy")).read_text())
    config["name"], config["params"]["n_prompts"] = "toy-one-prompt", 1
    path = tmp_path / "toy-one-prompt.yaml"
    path.write_text(yaml.safe_dump(config))
    m = execute(resolve(str(path), "bon", {"n": 2}), tmp_path / "runs").results["metrics"]
    assert m["win_rate"]["se"] is None and m["win_rate"]["n_prompts"] == 1
    assert m["reward_exact"]["ci95"] == [m["reward_exact"]["mean"]] * 2

"""Training methods converge to their exact optima on the toy task (KL by enumeration)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from harness import bon, kl, targets
from harness.method import RunContext
from harness.policy import sequence_logprobs
from harness.pool import PoolCache
from methods.ppo import PPO, PPOMethodConfig
from methods.vbon import VBoN, VBoNConfig
from tests.conftest import support_arrays


def kl_to_target(task, policy, target_of):
    """Mean over prompts of KL(pi || target) and KL(pi_ref || target), exact by enumeration."""
    trained, reference = [], []
    for i, prompt in enumerate(task.prompts):
        p_ref, r = support_arrays(task, i)
        target = target_of(p_ref, r)
        support = task.reference.support(prompt).tokens
        pi = np.exp(policy.logprob([prompt], support)[0])
        trained.append(kl.kl_exact(pi, target))
        reference.append(kl.kl_exact(p_ref, target))
    return float(np.mean(trained)), float(np.mean(reference))


@pytest.mark.parametrize(
    ("method", "config", "target_of"),
    [
        (PPO, PPOMethodConfig(beta=1.0), lambda p, r: targets.kl_regularized_optimum(p, r, 1.0)),
        (VBoN, VBoNConfig(n=4, cdf="exact"), lambda p, r: targets.vbon_optimum(p, r, 4)),
        (VBoN, VBoNConfig(n=4, cdf="exact", variant="l1"), lambda p, r: targets.vbon_l1_optimum(p, r, 4)),
    ],
    ids=["ppo", "vbon", "vbon-l1"],
)
def test_converges_to_the_exact_optimum(toy, tmp_path, method, config, target_of):
    start = time.perf_counter()
    policy = method(config).align(RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path)))
    trained, reference = kl_to_target(toy, policy, target_of)
    assert trained < 0.1 * reference, (trained, reference)
    assert trained < 0.1
    assert policy.training.steps == config.steps and policy.training.tokens > 0
    print(f"{method.__name__}: KL to target {reference:.3f} -> {trained:.4f} in {time.perf_counter() - start:.0f}s")


def test_vbon_with_the_pool_cdf_moves_toward_best_of_n(toy, tmp_path):
    config = VBoNConfig(n=4, cdf="pool", pool_size=64, steps=100)
    policy = VBoN(config).align(RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path)))
    trained, reference = kl_to_target(toy, policy, lambda p, r: bon.bon_distribution(p, r, 4))
    assert trained < 0.5 * reference, (trained, reference)


def test_trained_policy_logprobs_are_normalised(toy, tmp_path):
    policy = PPO(PPOMethodConfig(steps=5)).align(
        RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path))
    )
    for prompt in toy.prompts[:2]:
        support = toy.reference.support(prompt).tokens
        assert np.exp(policy.logprob([prompt], support)[0]).sum() == pytest.approx(1.0, abs=1e-6)
        sample = policy.generate([prompt], 4, seed=0)
        np.testing.assert_allclose(
            sequence_logprobs(sample.token_logprobs)[0], policy.logprob([prompt], sample.tokens)[0], atol=1e-9
        )


def test_a_trained_run_reports_consistent_kl_estimates(tmp_path):
    """k1 and k3 Monte Carlo estimates of a trained policy's KL agree with the exact KL."""
    from harness.run import execute, resolve

    spec = resolve("toy", "ppo", {"steps": 40}, seed=0, evaluation={"samples_per_prompt": 2000})
    result = execute(spec, tmp_path)
    m = result.results["metrics"]
    assert m["kl_exact"]["mean"] > 0.3
    for name in ("kl_mc", "kl_k3"):
        assert m[name]["mean"] == pytest.approx(m["kl_exact"]["mean"], rel=0.05), name
    assert m["reward"]["mean"] == pytest.approx(m["reward_exact"]["mean"], rel=0.02)
    cost = result.results["cost"]
    assert cost["samples_per_output"] == 1 and cost["training_steps"] == 40 and cost["training_tokens"] > 0


def _run(method, config, task, tmp_path):
    return method(config).align(RunContext(task=task, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path)))


@pytest.mark.parametrize(
    ("method", "config"),
    [
        ("bonbon", {"n": 4, "pool_size": 256, "steps": 150, "lr": 1e-3}),
        ("bond", {"n": 4, "pool_size": 256, "steps": 150}),
    ],
)
def test_best_of_n_imitators_end_closer_to_best_of_n(toy, tmp_path, method, config):
    from harness.method import METHODS

    cls = METHODS.get(method)
    policy = _run(cls, cls.Config(**config), toy, tmp_path)
    trained, reference = kl_to_target(toy, policy, lambda p, r: bon.bon_distribution(p, r, 4))
    assert trained < 0.5 * reference, (trained, reference)
    print(f"{method}: KL to pi_BoN {reference:.3f} -> {trained:.4f}")


def test_dpo_moves_probability_toward_preferred_completions(toy, tmp_path):
    from methods.dpo import DPO, DPOConfig

    policy = _run(DPO, DPOConfig(beta=0.5, pool_size=256, steps=100, lr=1e-3), toy, tmp_path)
    before, after = [], []
    for i, prompt in enumerate(toy.prompts):
        p_ref, r = support_arrays(toy, i)
        pi = np.exp(policy.logprob([prompt], toy.reference.support(prompt).tokens)[0])
        before.append(p_ref @ r)
        after.append(pi @ r)
    assert np.mean(after) > np.mean(before) + 1.0, (np.mean(before), np.mean(after))


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(toy, tmp_path):
    """An objective that turns NaN at step 5 (a reward model gone wrong) stops training there."""
    from harness.train import PPOConfig, train_on_policy

    calls = []

    def reward(prompts, completions):
        calls.append(1)
        r = toy.reward.score(prompts, completions)
        return [x * np.nan for x in r] if len(calls) > 5 else r

    ckpt = tmp_path / "ckpt"
    ctx = RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path), checkpoint_dir=ckpt)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 5, so training stopped; the last good"):
        train_on_policy(ctx, PPOConfig(steps=20, checkpoint_every=1), reward, beta=1.0)
    state = torch.load(ckpt / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    """SIGINT mid-training, run again: the same results.json as a run that was never interrupted."""
    args = ["run", "--method", "ppo", "--task", "toy", "-p", "steps=150", "-p", "checkpoint_every=10"]
    whole = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--out", str(tmp_path / "a")], capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".checkpoints/toy/ppo/*/checkpoint.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0 and not list(out.glob("toy/ppo/*/results.json"))
    resumed = subprocess.run(
        [sys.executable, "-m", "harness", "-v", *args, "--out", str(out)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming training" in resumed.stderr
    (a,) = (tmp_path / "a").glob("toy/ppo/*/results.json")
    (b,) = out.glob("toy/ppo/*/results.json")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for r in (ra, rb):
        r.pop("timing")
        r["cost"].pop("training_seconds")
    assert ra == rb
    assert (b.parent / "policy" / "model.safetensors").is_file()
    assert not list(out.glob(".checkpoints/toy/ppo/*/checkpoint.pt"))


def test_lora_trains_only_adapters_and_improves_the_objective(toy, tmp_path):
    config = PPOMethodConfig(beta=1.0, steps=60, lora_rank=4, lr=1e-2)
    policy = _run(PPO, config, toy, tmp_path)
    trained, reference = kl_to_target(toy, policy, lambda p, r: targets.kl_regularized_optimum(p, r, 1.0))
    assert trained < 0.5 * reference, (trained, reference)
    saved = {p.name for p in (tmp_path / "policy").iterdir()}
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved
    from harness.task import load_task
    from tasks.toy import ToyParams, build_model

    fresh = build_model(ToyParams.model_validate(load_task("toy").params))
    for a, b in zip(fresh.state_dict().values(), toy.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # training worked on a copy: the reference model is untouched

"""Training methods converge to their exact optima on the toy task (KL by enumeration)."""

from __future__ import annotations

import copy
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
from harness.methods.ppo import PPO, PPOMethodConfig
from harness.methods.vbon import VBoN, VBoNConfig
from harness.policy import sequence_logprobs
from harness.pool import PoolCache
from harness.store import list_runs
from tests.conftest import interruptible, support_arrays


def kl_to_target(task, policy, target_of):
    """Mean over prompts of KL(pi || target) and KL(pi_ref || target), exact by enumeration."""
    trained, reference = [], []
    for i, prompt in enumerate(task.prompts):
        p_ref, r = support_arrays(task, i)
        target = target_of(p_ref, r)
        support = task.reference.support(prompt).tokens
        pi = np.exp(policy.sequence_logprobs([prompt], support)[0])
        trained.append(kl.kl_exact(pi, target))
        reference.append(kl.kl_exact(p_ref, target))
    return float(np.mean(trained)), float(np.mean(reference))


@pytest.mark.parametrize(
    ("method", "config", "target_of"),
    [
        (PPO, PPOMethodConfig(beta=1.0), lambda p, r: targets.kl_regularized_optimum(p, r, 1.0)),
        (VBoN, VBoNConfig(n=4, cdf="exact"), lambda p, r: targets.vbon_optimum(p, r, 4)),
        (VBoN, VBoNConfig(n=4, cdf="exact", variant="l1"), lambda p, r: targets.vbon_l1_optimum(p, r, 4, 64)),
        (VBoN, VBoNConfig(n=8, cdf="exact", variant="released"), lambda p, r: targets.vbon_released_optimum(p, r, 8)),
    ],
    ids=["ppo", "vbon", "vbon-l1", "vbon-released"],
)
def test_converges_to_the_exact_optimum(toy, tmp_path, method, config, target_of):
    start = time.perf_counter()
    policy = method(config).align(RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path)))
    trained, reference = kl_to_target(toy, policy, target_of)
    assert trained < 0.1 * reference, (trained, reference)
    assert trained < 0.1
    assert policy.training.steps == config.steps and policy.training.tokens > 0
    print(f"{method.__name__}: KL to target {reference:.3f} -> {trained:.4f} in {time.perf_counter() - start:.0f}s")


@pytest.mark.parametrize(("beta", "seed"), [(4.0, 1), (0.5, 2)])
def test_ppo_ends_near_its_optimum_at_small_and_large_beta(toy, tmp_path, beta, seed):
    """The toy sweep's ppo cells (100 steps): the largest beta, whose seed 1 once diverged from pi_ref, and the
    smallest, the farthest from pi_ref, end within 0.15 nats of KL(pi || pi*) of pi* = pi_ref exp(r/beta)/Z."""
    config = PPOMethodConfig(beta=beta, steps=100)
    policy = PPO(config).align(RunContext(task=toy, seed=seed, out_dir=tmp_path, pools=PoolCache(tmp_path)))
    trained, reference = kl_to_target(toy, policy, lambda p, r: targets.kl_regularized_optimum(p, r, beta))
    assert trained < 0.15 and trained < 0.25 * reference, (trained, reference)


def test_vbon_with_the_pool_cdf_moves_toward_best_of_n(toy, tmp_path):
    config = VBoNConfig(n=4, cdf="pool", train_pool_size=64, steps=100)
    policy = VBoN(config).align(RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path)))
    trained, reference = kl_to_target(toy, policy, lambda p, r: bon.bon_distribution(p, r, 4))
    assert trained < 0.5 * reference, (trained, reference)


def test_trained_policy_logprobs_are_normalised(toy, tmp_path):
    policy = PPO(PPOMethodConfig(steps=5)).align(
        RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path))
    )
    for prompt in toy.prompts[:2]:
        support = toy.reference.support(prompt).tokens
        assert np.exp(policy.sequence_logprobs([prompt], support)[0]).sum() == pytest.approx(1.0, abs=1e-6)
        sample = policy.generate([prompt], 4, seed=0)
        np.testing.assert_allclose(
            sequence_logprobs(sample.token_logprobs)[0], policy.sequence_logprobs([prompt], sample.tokens)[0], atol=1e-9
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
        ("bonbon", {"n": 4, "train_pool_size": 256, "steps": 150, "lr": 1e-3}),
        ("bond", {"n": 4, "train_pool_size": 256, "steps": 150}),
    ],
)
def test_best_of_n_imitators_end_closer_to_best_of_n(toy, tmp_path, method, config):
    from harness.method import METHODS

    cls = METHODS.get(method)
    policy = _run(cls, cls.Config(**config), toy, tmp_path)
    trained, reference = kl_to_target(toy, policy, lambda p, r: bon.bon_distribution(p, r, 4))
    assert trained < 0.5 * reference, (trained, reference)
    print(f"{method}: KL to pi_BoN {reference:.3f} -> {trained:.4f}")


def test_bonbon_with_the_tie_aware_target_lands_closer_to_best_of_n(toy, tmp_path):
    """On tied rewards the paper's gap 1/(2 beta_n) (5.5 at n = 4) exceeds the gap under pi_BoN (about 5.0 on
    toy), so BoNBoN overshoots pi_BoN; the tie-aware target does not."""
    from harness.methods.bonbon import BoNBoN, BoNBoNConfig

    kls = {}
    for target in ("paper", "ties"):
        config = BoNBoNConfig(n=4, train_pool_size=256, steps=100, lr=1e-3, target=target)
        policy = _run(BoNBoN, config, toy, tmp_path / target)
        kls[target], _ = kl_to_target(toy, policy, lambda p, r: bon.bon_distribution(p, r, 4))
    assert kls["ties"] < 0.8 * kls["paper"], kls
    print(f"bonbon: KL to pi_BoN with the paper's target {kls['paper']:.4f}, tie-aware {kls['ties']:.4f}")


def _exact(task, policy, n_values=(1, 2, 4, 8, 16, 32)):
    """Mean over prompts of the exact expected reward, KL(pi || pi_ref) and KL(pi || pi_BoN) for each n, for the
    policy and for pi_ref."""
    out = {"reward": [], "reward_ref": [], "kl": [], **{n: [] for n in n_values}, **{f"ref{n}": [] for n in n_values}}
    for i, prompt in enumerate(task.prompts):
        p_ref, r = support_arrays(task, i)
        pi = np.exp(policy.sequence_logprobs([prompt], task.reference.support(prompt).tokens)[0])
        out["reward"].append(pi @ r)
        out["reward_ref"].append(p_ref @ r)
        out["kl"].append(kl.kl_exact(pi, p_ref))
        for n in n_values:
            out[n].append(kl.kl_exact(pi, bon.bon_distribution(p_ref, r, n)))
            out[f"ref{n}"].append(kl.kl_exact(p_ref, bon.bon_distribution(p_ref, r, n)))
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_iterative_bond_distils_best_of_n_to_the_power_of_iterations(toy, tmp_path):
    """Two phases of best-of-2 distillation, the anchor reset to the policy in between, aim at best-of-4."""
    from harness.methods.bond import BOND, BONDConfig

    policy = _run(BOND, BONDConfig(n=2, iterations=2, train_pool_size=256, steps=150), toy, tmp_path)
    e = _exact(toy, policy, (2, 4))
    assert e[4] < 0.2 * e["ref4"], e
    assert e[4] < e[2], e  # past best-of-2, the first phase's target


def test_jbond_climbs_the_best_of_n_path(toy, tmp_path):
    """J-BOND distils best-of-2 of an EMA anchor that follows the policy: the policy moves far from pi_ref,
    at a higher reward, while staying near the best-of-n family (of some n > 2)."""
    from harness.methods.jbond import JBOND, JBONDConfig

    e = _exact(toy, _run(JBOND, JBONDConfig(steps=150), toy, tmp_path))
    assert e["kl"] > 1.0 and e["reward"] > e["reward_ref"] + 2.0, e
    n_best = min((n for n in e if isinstance(n, int)), key=e.get)
    assert n_best > 2 and e[n_best] < 0.2 and e[n_best] < 0.1 * e[f"ref{n_best}"], (n_best, e)
    # the log's kl is from pi_ref, as every method's is, and kl_anchor the penalty's KL to the anchor: the last
    # window's rollouts come from policies near the final one, whose exact KL from pi_ref it then estimates
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert logged[0]["kl"] == pytest.approx(logged[0]["kl_anchor"], abs=1e-6)  # step 0: the anchor is pi_ref
    assert logged[-1]["kl"] == pytest.approx(e["kl"], rel=0.25), (logged[-1], e)
    assert logged[-1]["kl_anchor"] < 0.5 * logged[-1]["kl"], logged[-1]


def test_dpo_moves_probability_toward_preferred_completions(toy, tmp_path):
    from harness.methods.dpo import DPO, DPOConfig

    policy = _run(DPO, DPOConfig(beta=0.5, train_pool_size=256, steps=100, lr=1e-3), toy, tmp_path)
    before, after = [], []
    for i, prompt in enumerate(toy.prompts):
        p_ref, r = support_arrays(toy, i)
        pi = np.exp(policy.sequence_logprobs([prompt], toy.reference.support(prompt).tokens)[0])
        before.append(p_ref @ r)
        after.append(pi @ r)
    assert np.mean(after) > np.mean(before) + 1.0, (np.mean(before), np.mean(after))
    # offline training logs the reward and KL of fresh samples at every logged step
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [0, 25, 50, 75, 99]
    assert logged[-1]["reward"] > logged[0]["reward"] + 0.5 and all(np.isfinite(r["kl"]) for r in logged), logged


def test_a_logged_record_averages_the_steps_of_its_window(toy, tmp_path):
    """Logging does not move training, so a record of log_every = 4 is the mean of the four per-step records of
    log_every = 1 that it covers; the on-policy log carries the proxy reward beside the method's own."""
    logs = {}
    for every in (1, 4):
        out = tmp_path / str(every)
        out.mkdir()
        _run(VBoN, VBoNConfig(n=4, steps=9, log_every=every, checkpoint_every=100), toy, out)
        logs[every] = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in logs[4]]
    assert steps == [0, 4, 8], steps
    for record, window in zip(logs[4], ([0], [1, 2, 3, 4], [5, 6, 7, 8]), strict=True):
        for key in ("loss", "reward", "objective", "kl"):
            expected = np.mean([logs[1][s][key] for s in window])
            assert record[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), (key, record, window)
    # vbon's objective is rho = log pi_BoN/pi_ref, not the proxy reward
    assert any(abs(r["reward"] - r["objective"]) > 1e-3 for r in logs[1])


@pytest.mark.parametrize(
    ("method", "params", "more"),
    [
        ("ppo", {"steps": 15}, {"samples_per_prompt": 300}),
        ("ppo", {"steps": 15, "lora_rank": 2}, {"samples_per_prompt": 300}),
        ("bon", {"n": 4}, {"pool_size": 256}),  # best-of-n is evaluated from the pool
    ],
)
def test_a_stored_run_evaluates_again_from_its_saved_policy(tmp_path, method, params, more):
    """Re-evaluation loads the saved weights (or re-aligns an inference-only method): the same settings give the
    same metrics; more samples change the Monte Carlo estimates but not the exact ones."""
    from harness.run import execute, reevaluate, resolve

    run = execute(resolve("toy", method, params, seed=0), tmp_path)
    same = reevaluate(run.path)
    assert same.results["metrics"] == run.results["metrics"] and same.results["cost"] == run.results["cost"]
    assert same.path.parent == run.path / "evaluations" and (same.path / "samples.jsonl").is_file()
    assert reevaluate(run.path).reused
    more = reevaluate(run.path, more).results["metrics"]
    assert more["kl_exact"] == run.results["metrics"]["kl_exact"]
    assert more["reward"]["mean"] != run.results["metrics"]["reward"]["mean"]
    assert more["reward"]["mean"] == pytest.approx(more["reward_exact"]["mean"], abs=4 * more["reward"]["se"])


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(toy, tmp_path):
    """An objective that turns NaN at step 5 (a reward model gone wrong) stops training there."""
    from harness.training.config import PPOConfig
    from harness.training.onpolicy import train_on_policy

    calls = []

    def reward(prompts, completions, step):
        calls.append(1)
        r = toy.reward.score(prompts, completions)
        return [x * np.nan for x in r] if len(calls) > 5 else r

    ckpt = tmp_path / "ckpt"
    ctx = RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path), checkpoint_dir=ckpt)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 5, so training stopped; the last good"):
        train_on_policy(ctx, PPOConfig(steps=20, checkpoint_every=1), reward, beta=1.0)
    (saved,) = ckpt.glob("checkpoint-*.pt")  # named by its checksum; older ones are removed
    state = torch.load(saved, weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("ppo", ["steps=150", "checkpoint_every=10"]),
        ("jbond", ["steps=40", "checkpoint_every=10"]),  # the EMA anchor is restored
        ("bond", ["steps=40", "checkpoint_every=30", "iterations=2", "n=2"]),  # interrupted in the second phase
    ],
)
def test_interrupted_training_resumes_to_the_same_result(tmp_path, method, params):
    """SIGINT mid-training, run again: the same results.json as a run that was never interrupted."""
    args = ["run", "--method", method, "--task", "toy", *(x for p in params for x in ("-p", p))]
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
        preexec_fn=interruptible,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(f".checkpoints/toy/{method}/*/checkpoint-*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0 and not list(out.glob(f"toy/{method}/*/results.json"))
    resumed = subprocess.run(
        [sys.executable, "-m", "harness", "-v", *args, "--out", str(out)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming training" in resumed.stderr
    (a,) = (tmp_path / "a").glob(f"toy/{method}/*/results.json")
    (b,) = out.glob(f"toy/{method}/*/results.json")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for r in (ra, rb):
        r.pop("timing")
    assert ra == rb
    assert (b.parent / "policy" / "model.safetensors").is_file()
    assert not list(out.glob(f".checkpoints/toy/{method}/*/checkpoint-*.pt"))


def test_lora_trains_only_adapters_and_improves_the_objective(toy, tmp_path):
    config = PPOMethodConfig(beta=1.0, steps=60, lora_rank=4, lr=1e-2)
    policy = _run(PPO, config, toy, tmp_path)
    trained, reference = kl_to_target(toy, policy, lambda p, r: targets.kl_regularized_optimum(p, r, 1.0))
    assert trained < 0.5 * reference, (trained, reference)
    saved = {p.name for p in (tmp_path / "policy").iterdir()}
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved
    from harness.task import load_task
    from harness.tasks.toy import ToyParams, build_model

    fresh = build_model(ToyParams.model_validate(load_task("toy").params))
    for a, b in zip(fresh.state_dict().values(), toy.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # training worked on a copy: the reference model is untouched


DDP_SCRIPT = """
import hashlib, sys
from pathlib import Path
import numpy as np
from harness.distributed import process_state
from harness.method import RunContext
from harness.pool import PoolCache
from harness.task import build_task, load_task
from harness.methods.{module} import {cls}

state, out = process_state(), Path(sys.argv[1])
toy = build_task(load_task("toy"))
ctx = RunContext(task=toy, seed=0, out_dir=out / f"rank{{state.process_index}}", pools=PoolCache(out))
ctx.out_dir.mkdir(parents=True)
policy = {cls}({cls}.Config(steps=6, prompts_per_step=8)).align(ctx)
tables = np.concatenate([policy.policy.table[p.tokens].ravel() for p in toy.prompts])
digest = hashlib.sha256(np.round(tables, 6).tobytes()).hexdigest()
(out / f"rank{{state.process_index}}.txt").write_text(f"{{state.num_processes}} {{policy.training.tokens}} {{digest}}")
"""


@pytest.mark.parametrize(("module", "cls"), [("ppo", "PPO"), ("dpo", "DPO")])
def test_two_process_ddp_keeps_the_copies_identical(tmp_path, module, cls):
    """Launched as 2 processes (torchrun, gloo on CPU: the code path of DDP on GPUs), each process trains on half
    of every step's prompts; averaged gradients keep both copies of the model identical, the token count covers
    both halves, and only the main process saves the policy."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(module=module, cls=cls))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [(tmp_path / f"rank{i}.txt").read_text().split() for i in range(2)]
    assert ranks[0] == ranks[1] and ranks[0][0] == "2", ranks
    if module == "ppo":  # every toy completion has 3 tokens: steps x prompts x samples_per_prompt x 3
        assert int(ranks[0][1]) == 6 * 8 * 16 * 3
    assert (tmp_path / "rank0" / "policy").is_dir() and not (tmp_path / "rank1" / "policy").exists()


def test_a_two_process_run_writes_one_run_from_the_main_process(tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--method", "dpo", "--task", "toy", "-p", "steps=4", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list_runs(out)
    assert proc.stdout.count("run: ") == 1 and (run / "policy").is_dir()
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_training_reads_the_sampling_distribution_at_the_task_temperature(tiny_lm):
    """The training core's log-probabilities are those the policy samples with (temperature applied), so that a
    trained policy's KL and objectives refer to the distribution that is evaluated."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.hf import HFPolicy
    from harness.policy import Prompt
    from harness.task import GenerationConfig
    from harness.training.logprobs import completion_forward

    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    prompts = [Prompt(str(i), t, tuple(tokenizer(t).input_ids)) for i, t in enumerate(["We propose", "The model"])]
    for temperature in (0.7, 1.0, 1.5):
        policy = HFPolicy(model, tokenizer, GenerationConfig(max_new_tokens=6, temperature=temperature))
        s = policy.sample(prompts, 3, seed=0)
        rows = [p for p in prompts for _ in range(3)]
        comps = [c for row in s.tokens for c in row]
        with torch.no_grad():
            lp, _, mask = completion_forward(model, None, rows, comps, temperature)
        for k, expected in enumerate(x for row in s.token_logprobs for x in row):
            np.testing.assert_allclose(lp[k, : len(expected)].numpy(), expected, atol=1e-4)
            assert mask[k].sum() == len(expected)


def test_training_refuses_a_filtered_sampling_distribution(tiny_aclsum, tmp_path):
    from harness.run import ConfigError, execute, resolve

    spec = resolve(tiny_aclsum(tmp_path, "aclsum-topk").name, "dpo")
    spec.task.generation.top_k = 5
    with pytest.raises(ConfigError, match="top_k = 5, top_p = 1.0 .accepted: top_k = 0, top_p = 1"):
        execute(spec, tmp_path / "runs")
    assert not list_runs(tmp_path / "runs")


def test_ppo_core_helpers_against_exact_answers():
    from harness.training.onpolicy import linear_decay, masked_mean_std, returns_to_go

    rewards = torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(returns_to_go(rewards), torch.tensor([[2.0, 1.0, 3.0], [4.5, 4.0, 0.0]]))
    mean, std = masked_mean_std(rewards, mask)
    kept = np.array([1.0, -2.0, 3.0, 0.5, 4.0])
    assert mean.item() == pytest.approx(kept.mean()) and std.item() == pytest.approx(kept.std())
    assert [linear_decay(0.1, s, 4) for s in range(4)] == pytest.approx([0.1, 0.075, 0.05, 0.025])


def test_the_value_loss_does_not_move_the_policy(toy):
    """The value head reads the hidden states detached: a value loss leaves every policy gradient at zero."""
    from harness.training.logprobs import completion_forward

    model = copy.deepcopy(toy.model)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    prompts = toy.prompts[:2]
    _, values, _ = completion_forward(model, head, prompts, [(0, 1, 2), (3, 4, 5)])
    (values**2).sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert head.weight.grad is not None and head.weight.grad.any()


def test_a_trained_policy_is_measured_on_training_prompts_too(tmp_path):
    """`evaluation.train_prompts` adds `<metric>_train` for a trained policy. The toy task trains on its
    evaluation prompts, so on all of them every metric agrees exactly with its evaluation-prompt value; on the
    first three, the exact KL is the mean of those prompts' exact KLs of the saved policy. Best-of-n, which
    trains nothing, has none."""
    from harness.run import execute, load_aligned, reevaluate, resolve, stored_spec
    from harness.task import build_task

    run = execute(resolve("toy", "ppo", {"steps": 15}, seed=0, evaluation={"train_prompts": 8}), tmp_path)
    m = run.results["metrics"]
    evaluated = {name for name in m if not name.endswith("_train")}
    assert {name + "_train" for name in evaluated} == set(m) - evaluated
    for name in evaluated:
        on_train = m[name + "_train"]
        assert on_train["id"] == f"{name}_train@1"
        assert {k: v for k, v in on_train.items() if k != "id"} == {k: v for k, v in m[name].items() if k != "id"}
    assert len((run.path / "train_samples.jsonl").read_text().splitlines()) == 8 * 256

    three = reevaluate(run.path, {"train_prompts": 3}).results["metrics"]
    assert three["kl_exact_train"]["n_prompts"] == 3
    spec = stored_spec(run.path)
    task = build_task(spec.task)
    policy = load_aligned(run.path, spec, task, PoolCache(tmp_path))
    per_prompt = []
    for prompt in task.train_prompts[:3]:
        p_ref, _ = support_arrays(task, task.prompts.index(prompt))
        pi = np.exp(policy.sequence_logprobs([prompt], task.reference.support(prompt).tokens)[0])
        per_prompt.append(kl.kl_exact(pi, p_ref))
    assert three["kl_exact_train"]["mean"] == pytest.approx(np.mean(per_prompt), rel=1e-9)

    best = execute(resolve("toy", "bon", {"n": 4}, seed=0, evaluation={"train_prompts": 8}), tmp_path)
    assert not any(name.endswith("_train") for name in best.results["metrics"])


def test_training_prompt_metrics_ask_for_no_more_prompts_than_the_task_has(tmp_path):
    from harness.run import execute, resolve
    from harness.task import ConfigError, load_task

    assert "train_prompts" not in load_task("toy").model_dump()["evaluation"]  # 0 keeps stored runs' hashes
    with pytest.raises(ConfigError, match=r"evaluation.train_prompts = 9, but task 'toy' has 8 training prompts"):
        execute(resolve("toy", "ppo", {"steps": 1}, evaluation={"train_prompts": 9}), tmp_path)

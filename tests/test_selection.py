"""Soft and regularized best-of-n: exact output distributions against brute force, their own samples and their
limits; bad input fails at the edge."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from harness import bon, kl, seeding
from harness.evaluate import outputs_of
from harness.method import RunContext
from harness.methods.bon import BoNPolicy
from harness.methods.rbon import RBoNPolicy
from harness.methods.softbon import MIN_LAMBDA, SoftBoN, SoftBoNConfig, SoftBoNPolicy
from harness.policy import enumerate_prompt
from harness.pool import PoolCache
from harness.selection import rewards_apart, subsets_in_rounds
from harness.task import build_task
from tests.conftest import support_arrays


def _brute_force_softbon(p: np.ndarray, r: np.ndarray, n: int, lam: float) -> np.ndarray:
    """Sum over every n-tuple of outcomes of its probability times the softmax pick."""
    out = np.zeros(len(p))
    for tup in itertools.product(range(len(p)), repeat=n):
        ix = list(tup)
        w = np.exp(r[ix] / lam)
        np.add.at(out, ix, np.prod(p[ix]) * w / w.sum())
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("lam", [0.05, 0.7, 4.0])
def test_softbon_distribution_by_brute_force_with_ties(n, lam):
    p = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    r = np.array([0.0, 1.0, 1.0, 2.0, 0.5])  # outcomes 1 and 2 tie
    np.testing.assert_allclose(bon.softbon_distribution(p, r, n, lam), _brute_force_softbon(p, r, n, lam), atol=1e-12)


def test_softbon_tends_to_best_of_n_and_to_the_reference(toy):
    p_ref, r = support_arrays(toy, 0)
    n = 8
    best_of_n = bon.bon_distribution(p_ref, r, n)
    np.testing.assert_allclose(bon.softbon_distribution(p_ref, r, n, 1e-3), best_of_n, atol=1e-12)
    np.testing.assert_allclose(bon.softbon_distribution(p_ref, r, n, 1e6), p_ref, atol=1e-5)
    # in between, the KL to best-of-n shrinks as lambda does, and the KL to the reference grows
    lams = [8.0, 2.0, 0.5, 0.1, 0.01]
    dists = [bon.softbon_distribution(p_ref, r, n, lam) for lam in lams]
    to_bon = [kl.kl_exact(d, bon.bon_distribution(p_ref, r, n)) for d in dists]
    to_ref = [kl.kl_exact(d, p_ref) for d in dists]
    assert np.all(np.diff(to_bon) < 0) and np.all(np.diff(to_ref) > 0), (to_bon, to_ref)


def test_rbon_with_beta_0_is_best_of_n_exactly(toy):
    p_ref, r = support_arrays(toy, 1)
    for n in (1, 4, 16):
        np.testing.assert_array_equal(bon.rbon_distribution(p_ref, r, n, 0.0), bon.bon_distribution(p_ref, r, n))
    prompts = toy.prompts[:3]
    a = RBoNPolicy(0.0, toy.reference, toy.reward, 4).generate(prompts, 500, seed=5)
    b = BoNPolicy(toy.reference, toy.reward, 4).generate(prompts, 500, seed=5)
    assert a.tokens == b.tokens


def test_rbon_favours_likely_completions_as_beta_grows(toy):
    p_ref, r = support_arrays(toy, 1)
    log_p = [p_ref @ np.log(p_ref)] + [
        bon.rbon_distribution(p_ref, r, 4, beta) @ np.log(p_ref) for beta in (0.0, 0.5, 2.0, 20.0)
    ]
    assert np.all(np.diff(log_p[1:]) > 0), log_p
    # a large beta makes the score the reference log-probability: best-of-n of it picks the mode more often
    assert log_p[-1] > log_p[0]


def _chi2_p(counts: np.ndarray, target: np.ndarray) -> float:
    expected = target * counts.sum()
    big = expected >= 5  # pool the rare outcomes into one cell
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize(
    ("make", "other"),
    [
        (lambda t: SoftBoNPolicy(0.5, t.reference, t.reward, 4), lambda p, r: bon.softbon_distribution(p, r, 4, 1.0)),
        (lambda t: RBoNPolicy(0.5, t.reference, t.reward, 4), lambda p, r: bon.rbon_distribution(p, r, 4, 0.0)),
    ],
    ids=["softbon", "rbon"],
)
def test_samples_match_the_exact_distribution(toy, make, other):
    """Chi-square of the policy's own outputs against its exact distribution; the same test rejects a nearby
    distribution (power)."""
    policy = make(toy)
    prompt = toy.prompts[0]
    out = policy.generate([prompt], 20000, seed=11)
    support = toy.reference.support(prompt).tokens[0]
    index = {c: j for j, c in enumerate(support)}
    counts = np.bincount([index[c] for c in out.tokens[0]], minlength=len(support))
    p_ref, r = support_arrays(toy, 0)
    exact = np.exp(policy.sequence_logprobs([prompt], [support])[0])
    assert exact.sum() == pytest.approx(1.0, abs=1e-9)
    assert _chi2_p(counts, exact) > 1e-3
    assert _chi2_p(counts, other(p_ref, r)) < 1e-6


def test_pooled_outputs_are_picked_from_their_candidates_in_the_pool(toy, tmp_path):
    """With the shared pool, each output is one of its n candidates, n distinct samples of the prompt's pool (the
    best of them at the smallest lambda), with that sample's reward; `generate` picks the same outputs."""
    ctx = RunContext(task=toy, seed=0, out_dir=tmp_path, pools=PoolCache(tmp_path))
    policy = SoftBoN(SoftBoNConfig(n=4, **{"lambda": MIN_LAMBDA})).align(ctx)
    assert isinstance(policy, SoftBoNPolicy) and policy.candidates is not None
    out = policy.pooled(3, 64)
    assert out is not None and out.candidates is not None
    pool = ctx.evaluation_pool(4)
    assert pool is not None
    np.testing.assert_array_equal(toy.reward.score(toy.prompts, out.completions), out.rewards)
    for i in range(len(toy.prompts)):
        candidates = out.candidates[i]
        assert candidates.shape == (64, 4) and all(len(set(c)) == 4 for c in candidates)
        for y, c in zip(out.completions.tokens[i], candidates, strict=True):
            assert y in {pool.completions.tokens[i][j] for j in c}
        np.testing.assert_array_equal(out.rewards[i], pool.rewards[i][candidates].max(axis=1))
    generated = policy.generate(toy.prompts, 64, seeding.derive_seed(3, seeding.OUTPUTS))
    assert generated.tokens == out.completions.tokens
    assert PoolCache(tmp_path).sampled == 0  # the pool came from disk: nothing sampled afresh


def test_a_run_reports_exact_metrics_and_rbon_at_beta_0_matches_bon(tmp_path):
    from harness.run import execute, resolve

    exact = ("reward_exact", "win_rate_exact", "kl_exact")
    r_bon = execute(resolve("toy", "bon", {"n": 4}), tmp_path).results
    r_rbon = execute(resolve("toy", "rbon", {"n": 4, "beta": 0.0}), tmp_path).results
    for name in exact:
        assert r_rbon["metrics"][name]["mean"] == r_bon["metrics"][name]["mean"], name
    assert r_rbon["cost"]["samples_per_output"] == 4
    assert r_rbon["metrics"]["kl_exact"]["mean"] <= r_rbon["metrics"]["kl_bon_bound"]["mean"]
    soft = execute(resolve("toy", "softbon", {"n": 4, "lambda": 1.0}), tmp_path).results
    assert 0 < soft["metrics"]["kl_exact"]["mean"] < r_bon["metrics"]["kl_exact"]["mean"]
    assert soft["metrics"]["kl_mc"]["mean"] == pytest.approx(soft["metrics"]["kl_exact"]["mean"], abs=0.1)


@pytest.mark.parametrize(("n", "lam"), [(2, 0.3), (4, 1.0), (16, 0.5), (64, 0.05)])
def test_softbon_log_ratio_is_exact_when_the_reference_rewards_follow_pi_ref(toy, n, lam):
    """A reference 'pool' whose reward frequencies are pi_ref's exactly gives the exact log pi/pi_ref."""
    p_ref, r = support_arrays(toy, 0)
    counts = np.rint(p_ref * 1e5).astype(int)  # pi_ref rounded to a law of 1e5 equally weighted draws
    q = counts / counts.sum()
    reference = np.repeat(r, counts)
    exact = np.log(bon.softbon_distribution(q, r, n, lam)[q > 0] / q[q > 0])
    np.testing.assert_allclose(bon.softbon_log_ratio(r[q > 0], reference, n, lam), exact, atol=1e-9)
    assert bon.softbon_log_ratio(r, reference, 1, lam) == pytest.approx(np.zeros(len(r)))


def test_softbon_log_ratio_with_a_law_per_output_is_the_ratio_under_each_law(toy):
    """One reward law per output (a row each) gives, output by output, the ratio under that output's law."""
    p_ref, r = support_arrays(toy, 0)
    rng = np.random.default_rng(0)
    laws = r[rng.choice(len(r), size=(5, 40), p=p_ref)]
    outputs = r[rng.choice(len(r), 5, p=p_ref)]
    rows = [bon.softbon_log_ratio(outputs[j : j + 1], laws[j], 16, 0.1)[0] for j in range(5)]
    np.testing.assert_allclose(bon.softbon_log_ratio(outputs, laws, 16, 0.1), rows, atol=1e-12)
    with pytest.raises(ValueError, match="one reward law per output: 5 outputs, 4 laws"):
        bon.softbon_log_ratio(outputs, laws[:4], 16, 0.1)


def test_candidates_come_in_rounds_of_disjoint_uniform_subsets():
    m, n, count = 10, 3, 7  # rounds of 3 outputs, a pool sample left out of each round
    draws = [subsets_in_rounds(m, n, count, np.random.default_rng(s)) for s in range(4000)]
    for c in draws[:50]:
        assert c.shape == (count, n)
        for start in range(0, count, m // n):  # the outputs of a round have disjoint candidates
            members = c[start : start + m // n].ravel()
            assert len(set(members)) == len(members)
    # every output's candidates are a uniformly random n-subset of the pool: each of the C(10, 3) subsets of
    # output 4 (of the second round) equally likely
    counts = np.zeros(m)
    subsets: dict[tuple[int, ...], int] = {}
    for c in draws:
        counts[c[4]] += 1
        key = tuple(sorted(c[4]))
        subsets[key] = subsets.get(key, 0) + 1
    assert len(subsets) == 120
    assert stats.chisquare(list(subsets.values())).pvalue > 1e-3
    np.testing.assert_allclose(counts / len(draws), n / m, atol=0.02)


def test_rewards_apart_hold_the_held_out_and_the_pool_outside_each_output_s_candidates():
    pool = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    held_out = np.array([1.0, 2.0])
    candidates = np.array([[0, 3], [4, 1]])
    np.testing.assert_array_equal(
        rewards_apart(candidates, pool, held_out), [[1.0, 2.0, 11.0, 12.0, 14.0], [1.0, 2.0, 10.0, 12.0, 13.0]]
    )


@pytest.fixture(scope="module")
def toy_32(toy, tmp_path_factory):
    """toy with 32 outputs per prompt, and a store whose pools (64 per prompt, held-out 256) every seed reuses."""
    config = toy.config.model_copy(
        update={"evaluation": toy.config.evaluation.model_copy(update={"samples_per_prompt": 32})}
    )
    return build_task(config), PoolCache(tmp_path_factory.mktemp("pools"))


@pytest.mark.parametrize(
    ("n", "lam", "bound"),
    # the pool's own reward law (the candidates among it) was biased by +0.042, +0.087 and +0.33 at these settings
    # over the same seeds, with standard errors 0.021, 0.031 and 0.072
    [(8, 0.3, 0.03), (16, 0.1, 0.04), (64, 0.1, 0.1)],
)
def test_softbon_kl_pool_is_unbiased_over_seeds(toy_32, n, lam, bound):
    """The bias of `kl_pool`, E[kl_pool] - KL, over 20 seeds (each a pool of 64 and held-out samples of 256 per
    prompt): paired with the exact log pi/pi_ref of the same outputs, whose mean over outputs has expectation KL
    exactly, so that what remains is the reward law's error. It stays within `bound` (about three standard errors
    of the mean over seeds, 0.007, 0.012 and 0.030 at these settings)."""
    task, pools = toy_32
    exact = {}  # log pi/pi_ref of every completion of every prompt
    for prompt in task.prompts:
        e = enumerate_prompt(task.reference, task.reward, prompt)
        ratio = np.log(bon.softbon_distribution(e.p_ref, e.rewards, n, lam) / e.p_ref)
        exact[prompt.tokens] = dict(zip(e.support.tokens[0], ratio, strict=True))
    errors = []
    for seed in range(20):
        ctx = RunContext(task=task, seed=seed, out_dir=pools.root, pools=pools)
        policy = SoftBoN(SoftBoNConfig(n=n, **{"lambda": lam})).align(ctx)
        out = outputs_of(task, policy, seed)
        assert out.candidates is not None  # drawn from the pool
        terms = policy.kl_terms(out, [np.zeros(32)] * len(task.prompts))["kl_pool"]
        errors.append(
            np.mean(
                [
                    w @ (t - [exact[prompt.tokens][y] for y in ys])
                    for prompt, t, ys, w in zip(task.prompts, terms, out.completions.tokens, out.weights, strict=True)
                ]
            )
        )
    assert abs(np.mean(errors)) < bound, (np.mean(errors), np.std(errors, ddof=1) / np.sqrt(len(errors)))


def test_best_of_n_kl_reaches_the_bound_only_where_no_output_carries_mass(toy):
    """log n - (n-1)/n bounds the KL of best-of-n of any score; where outputs carry mass, the KL depends on which
    outputs the score favours."""
    p = np.array([0.9, 0.1])
    favours_likely = kl.kl_exact(bon.bon_distribution(p, np.array([1.0, 0.0]), 2), p)
    favours_unlikely = kl.kl_exact(bon.bon_distribution(p, np.array([0.0, 1.0]), 2), p)
    # closed forms: pi_2 = (0.99, 0.01) and (0.81, 0.19)
    assert favours_likely == pytest.approx(0.99 * np.log(0.99 / 0.9) + 0.01 * np.log(0.01 / 0.1), abs=1e-12)
    assert favours_unlikely == pytest.approx(0.81 * np.log(0.81 / 0.9) + 0.19 * np.log(0.19 / 0.1), abs=1e-12)
    assert favours_likely == pytest.approx(0.0713, abs=1e-4) and favours_unlikely == pytest.approx(0.0366, abs=1e-4)
    # on toy, with tie-free scores over the 216 completions of a prompt, n = 16
    p_ref, _ = support_arrays(toy, 0)
    kls = [kl.kl_exact(bon.bon_distribution(p_ref, score, 16), p_ref) for score in (np.log(p_ref), -np.log(p_ref))]
    assert len(np.unique(p_ref)) == len(p_ref)  # both scores are tie-free
    assert kls[0] < kls[1] - 0.1 and kls[1] < kl.kl_bon_bound(16)


@pytest.mark.parametrize(
    ("method", "param", "message"),
    [
        (
            "softbon",
            "lambda=0",
            f"invalid softbon config: lambda = 0: Input should be greater than or equal to {MIN_LAMBDA}",
        ),
        ("softbon", "n=0", "invalid softbon config: n = 0: Input should be greater than or equal to 1"),
        ("rbon", "beta=-0.5", "invalid rbon config: beta = -0.5: Input should be greater than or equal to 0"),
        ("rbon", "n=0", "invalid rbon config: n = 0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_is_one_line_before_any_work(tmp_path, method, param, message):
    args = ["run", "--method", method, "--task", "toy", "-p", param, "--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {message}", proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written, nothing sampled

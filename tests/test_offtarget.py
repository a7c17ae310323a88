"""Off-target evaluation: the harness's own metrics against hand computations, and lm-eval over a run's weights
against the same log-likelihoods computed directly."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness import bon, leaderboard, store
from harness.cli import app
from harness.evaluate import evaluate
from harness.method import RunContext
from harness.methods.rbon import RBoN, RBoNConfig
from harness.methods.softbon import SoftBoN, SoftBoNConfig
from harness.offtarget import DISTINCT_N, DISTINCT_SET, distinct, independent_groups, own_metrics
from harness.policy import enumerate_prompt
from harness.pool import PoolCache
from harness.task import build_task


def test_distinct_n_counts_distinct_ngrams_over_all_ngrams():
    comps = [(1, 2, 3), (1, 2, 4), (5,)]
    assert distinct(comps, 1) == pytest.approx(5 / 7)  # 1 2 3 1 2 4 5: five distinct
    assert distinct(comps, 2) == pytest.approx(3 / 4)  # (1,2) (2,3) (1,2) (2,4)
    assert distinct(comps, 3) == pytest.approx(1.0)
    assert distinct([(1,), (2,)], 2) == 1.0  # no bigrams at all


def _record(prompt, tokens, weight, ref_logprob, reward=0.0):
    return {"prompt_id": prompt, "tokens": list(tokens), "weight": weight, "ref_logprob": ref_logprob, "reward": reward}


def test_own_metrics_of_sampled_outputs_are_plain_means():
    a = [(1, 2), (1, 2, 3, 4), (1, 2), (5,), (6,), (7,), (8,), (9, 9)]  # eight independent outputs of prompt a
    records = [_record("a", t, 1 / 8, -float(len(t))) for t in a]
    records += [_record("b", (7,), 1 / 8, -1.0 - j % 2) for j in range(8)]
    m, notes = own_metrics(records, k=8, n=1, seed=0)
    assert notes == []
    assert m["length"]["mean"] == pytest.approx((14 / 8 + 1.0) / 2)
    assert m["ppl_ref"]["mean"] == pytest.approx((math.exp(14 / 14) + math.exp(12 / 8)) / 2)
    tokens_a = [t for c in a for t in c]
    assert m["distinct_1"]["mean"] == pytest.approx((len(set(tokens_a)) / len(tokens_a) + 1 / 8) / 2)
    assert m["distinct_2"]["mean"] == pytest.approx((distinct(a, 2) + 1.0) / 2)  # b has no bigrams
    assert m["length"]["id"] == "length@1" and m["length"]["n_prompts"] == 2


def test_pooled_best_of_n_is_read_through_independent_best_of_n_draws():
    """The best of disjoint random n-subsets of the pool are independent best-of-n draws: each pooled output is
    chosen with its best-of-n weight."""
    m_pool, n = 6, 2
    rows = [_record("a", (j,), w, -1.0, reward=float(j)) for j, w in enumerate(bon.pool_weights(m_pool, n))]
    rng = np.random.default_rng(0)
    counts = np.zeros(m_pool)
    draws = 20000
    for _ in range(draws):
        (group,) = independent_groups(rows, k=32, n=n, rng=rng)
        for (j,) in group:
            counts[j] += 1
    np.testing.assert_allclose(counts / (draws * m_pool // n), bon.pool_weights(m_pool, n), atol=0.01)


def test_distinct_n_is_left_out_where_the_pool_has_too_few_independent_outputs():
    pool = [_record("a", (j, j + 1), w, -2.0, reward=float(j)) for j, w in enumerate(bon.pool_weights(16, 4))]
    m, notes = own_metrics(pool, k=32, n=4, seed=0)
    assert not any(name.startswith("distinct") for name in m)
    assert "4 independent outputs" in notes[0] and "fewer than the 8" in notes[0]
    assert m["length"]["mean"] == pytest.approx(2.0)
    assert m["ppl_ref"]["mean"] == pytest.approx(math.exp(1.0))
    m2, notes2 = own_metrics(pool, k=32, n=2, seed=0)  # 8 independent outputs: one set
    assert notes2 == [] and 0 < m2["distinct_1"]["mean"] <= 1


def test_outputs_picked_from_pooled_candidates_are_grouped_where_their_candidates_are_disjoint():
    candidates = [[0, 1], [2, 3], [4, 5], [1, 6], [7, 8], [6, 9], [2, 4]]
    rows = [_record("a", (j,), 1 / 7, -1.0) | {"candidates": c} for j, c in enumerate(candidates)]
    groups = independent_groups(rows, k=7, n=2, rng=np.random.default_rng(0))
    assert groups == [[(0,), (1,), (2,)], [(3,), (4,)], [(5,), (6,)]]  # a group ends where candidates meet


def _expected_distinct(task, policy, m: int) -> float:
    """E[distinct-m] of DISTINCT_SET i.i.d. outputs of `policy`, exactly, averaged over the prompts of an
    enumerable task whose completions all have one length L: sum over m-grams g of 1 - (1 - P(g in y))^8, over
    the 8 (L - m + 1) m-grams of a set."""
    out = []
    for prompt in task.prompts:
        e = enumerate_prompt(task.reference, task.reward, prompt)
        pi = policy.distribution(e.p_ref, e.rewards)
        inside: dict[tuple[int, ...], float] = defaultdict(float)  # P(g in y) of each m-gram g
        for y, p in zip(e.support.tokens[0], pi, strict=True):
            for g in {y[i : i + m] for i in range(len(y) - m + 1)}:
                inside[g] += p
        length = len(e.support.tokens[0][0])
        out.append(sum(1 - (1 - q) ** DISTINCT_SET for q in inside.values()) / (DISTINCT_SET * (length - m + 1)))
    return float(np.mean(out))


@pytest.mark.parametrize(
    "method",
    [SoftBoN(SoftBoNConfig(n=4, **{"lambda": 0.3})), RBoN(RBoNConfig(n=4, beta=0.5))],
    ids=["softbon", "rbon"],
)
def test_distinct_n_of_pooled_selection_is_that_of_independent_outputs(toy, tmp_path, method):
    """Soft and regularized best-of-n pick every output from n candidates of the shared pool (64 per prompt), so
    that outputs can share a pooled sample. Read on sets of outputs with disjoint candidates, distinct-n has the
    expectation of distinct-n over 8 i.i.d. outputs, computed exactly on toy (all completions are 3 tokens long).
    Over 10 seeds (8 prompts each) the standard error is about 0.002, 0.007 and 0.01 for n = 1, 2, 3. Sets of
    8 consecutive outputs of random n-subsets, as before, gave distinct_3 0.653 (softbon) and 0.589 (rbon)
    against the exact 0.715 and 0.640."""
    config = toy.config.model_copy(
        update={"evaluation": toy.config.evaluation.model_copy(update={"samples_per_prompt": 64, "bootstrap": 100})}
    )
    task = build_task(config)
    values: dict[int, list[float]] = defaultdict(list)
    for seed in range(10):
        pools = PoolCache(tmp_path)
        policy = method.align(RunContext(task=task, seed=seed, out_dir=tmp_path, pools=pools))
        records = evaluate(task, policy, seed, pools).records
        metrics, notes = own_metrics(records, k=64, n=4, seed=seed, bootstrap=100)
        assert notes == []
        for m in DISTINCT_N:
            values[m].append(metrics[f"distinct_{m}"]["mean"])
    for m, tolerance in zip(DISTINCT_N, (0.006, 0.02, 0.03), strict=True):
        assert np.mean(values[m]) == pytest.approx(_expected_distinct(task, policy, m), abs=tolerance), m


def rolling_word_perplexity(model_dir, documents):
    """word_perplexity as lm-eval defines it, computed directly: exp(-sum of log p(doc | EOS) / sum of words)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, words = 0.0, 0
    for doc in documents:
        ids = [tokenizer.eos_token_id] + tokenizer(doc).input_ids
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
        total += float(logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())
        words += len(doc.split())
    return math.exp(-total / words)


def test_offtarget_on_a_bon_run_and_a_trained_run(tiny_aclsum, tiny_lm, tmp_path):
    from harness.run import execute, resolve
    from harness.tasks.imdb import held_out_documents

    name = tiny_aclsum(tmp_path, "aclsum-offtarget").name
    out = tmp_path / "runs"
    # 8 outputs per prompt: one set for distinct-n (bon's n = 8 exceeds the pool of 4, so it samples afresh)
    runs = {m: execute(resolve(name, m, evaluation={"samples_per_prompt": 8}), out).path for m in ("bon", "dpo")}
    reference_ppl = rolling_word_perplexity(tiny_lm, held_out_documents()[:3])
    found = {}
    for method, path in runs.items():
        before = (path / store.RESULTS).read_bytes()
        proc = CliRunner().invoke(app, ["offtarget", str(path), "--limit", "3", "--out", str(out)])
        assert proc.exit_code == 0, proc.output
        assert (path / store.RESULTS).read_bytes() == before  # the run's own record is untouched
        after = store.read_run(path)[1]
        entry = after["offtarget"]
        assert set(entry["metrics"]) == {"length", "distinct_1", "distinct_2", "distinct_3", "ppl_ref"}
        assert entry["notes"] == []
        records = store.read_jsonl(path / store.SAMPLES)
        w = np.array([r["weight"] for r in records])
        lengths = np.array([len(r["tokens"]) for r in records])
        n_prompts = len({r["prompt_id"] for r in records})
        assert entry["metrics"]["length"]["mean"] == pytest.approx(float(w @ lengths) / n_prompts)
        found[method] = entry["lm_eval"]
        assert "harness_imdb_heldout" in proc.output
    assert found["bon"]["weights"].startswith("reference")
    assert found["dpo"]["weights"] == "trained"
    bon_ppl = found["bon"]["results"]["harness_imdb_heldout"]["word_perplexity"]
    assert bon_ppl == pytest.approx(reference_ppl, rel=1e-4)
    assert found["dpo"]["results"]["harness_imdb_heldout"]["word_perplexity"] != pytest.approx(bon_ppl, rel=1e-6)

    # the leaderboard shows the off-target columns beside the rewards
    table = leaderboard.display(leaderboard.build(out, name))
    for column in ("rouge_l", "length", "ppl_ref", "harness_imdb_heldout:word_perplexity"):
        assert column in table.columns, column
    shown = f"{bon_ppl:.1f}" if bon_ppl >= 100 else f"{bon_ppl:.4f}"  # the board's precision
    assert table["harness_imdb_heldout:word_perplexity"].str.startswith(shown).any()


def test_an_unknown_lm_eval_task_is_a_one_line_error(tiny_aclsum, tmp_path):
    from harness.run import execute, resolve

    name = tiny_aclsum(tmp_path, "aclsum-offtarget-bad").name
    path = execute(resolve(name, "bon"), tmp_path / "runs").path
    before = (path / store.RESULTS).read_text()
    out = str(tmp_path / "runs")  # the run's own store: a run of another is refused (it is written beside)
    proc = CliRunner().invoke(app, ["offtarget", str(path), "--tasks", "no_such_task", "--out", out])
    assert proc.exit_code == 2
    lines = [line for line in proc.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no_such_task" in lines[0] and "harness_imdb_heldout" in lines[0], proc.output
    assert (path / store.RESULTS).read_text() == before
    json.loads(before)


def test_offtarget_over_every_run_of_a_task_with_the_harness_metrics_only(tiny_aclsum, tmp_path):
    from harness.run import execute, resolve

    name = tiny_aclsum(tmp_path, "aclsum-offtarget-all").name
    out = tmp_path / "runs"
    paths = [execute(resolve(name, "bon", {"n": n}), out).path for n in (1, 4)]
    neither = CliRunner().invoke(app, ["offtarget", "--out", str(out)])
    assert neither.exit_code == 2 and "give either RUN or --task" in neither.output
    result = CliRunner().invoke(app, ["offtarget", "--task", name, "--tasks", "", "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(app, ["show", str(paths[1]), "--out", str(out)])
    assert shown.exit_code == 0 and "│ ppl_ref " in shown.output and "off-target" in shown.output
    assert "ppl_ref v1" in " ".join(shown.output.split()) and not re.search(r"\w@\d", shown.output)  # no n-like ids
    entries = [store.read_run(p)[1]["offtarget"] for p in paths]
    assert all("lm_eval" not in e and e["settings"] == {"lm_eval_tasks": [], "limit": None} for e in entries)
    # best-of-4 weighs the pooled outputs differently from best-of-1, so their perplexities under pi_ref differ
    assert entries[0]["metrics"]["ppl_ref"]["mean"] != pytest.approx(entries[1]["metrics"]["ppl_ref"]["mean"])


def test_offtarget_on_a_lora_run_reads_the_merged_weights(tiny_aclsum, tiny_lm, tmp_path):
    from transformers import AutoTokenizer

    from harness.method import TrainingCost
    from harness.run import execute, resolve
    from harness.task import build_task
    from harness.tasks.imdb import held_out_documents
    from harness.training.trained import load_trained

    name = tiny_aclsum(tmp_path, "aclsum-offtarget-lora").name
    out = tmp_path / "runs"
    path = execute(resolve(name, "dpo", {"lora_rank": 2, "lr": 0.05}), out).path
    assert (path / "policy" / "adapter_config.json").is_file()
    result = CliRunner().invoke(app, ["offtarget", str(path), "--limit", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    reported = store.read_run(path)[1]["offtarget"]["lm_eval"]
    assert reported["weights"] == "trained"

    task = build_task(tiny_aclsum(tmp_path, "aclsum-offtarget-lora"))
    merged = load_trained(task, path / "policy", TrainingCost()).policy.model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    AutoTokenizer.from_pretrained(tiny_lm).save_pretrained(tmp_path / "merged")
    documents = held_out_documents()[:2]
    expected = rolling_word_perplexity(tmp_path / "merged", documents)
    got = reported["results"]["harness_imdb_heldout"]["word_perplexity"]
    assert got == pytest.approx(expected, rel=1e-4)
    assert got != pytest.approx(rolling_word_perplexity(tiny_lm, documents), rel=1e-4)  # the adapter counts


def test_the_reference_weights_are_scored_once_for_every_inference_time_run(
    tiny_aclsum, tiny_lm, tmp_path, monkeypatch
):
    """`offtarget --task` over several best-of-n runs runs lm-eval once on the reference weights they share, and
    each run stores the reference's scores."""
    from harness import offtarget
    from harness.run import execute, resolve
    from harness.tasks.imdb import held_out_documents

    name = tiny_aclsum(tmp_path, "aclsum-offtarget-once").name
    out = tmp_path / "runs"
    paths = [execute(resolve(name, "bon", {"n": n}), out).path for n in (1, 2, 4)]
    calls = []
    real = offtarget.lm_eval_scores
    monkeypatch.setattr(offtarget, "lm_eval_scores", lambda *a, **k: calls.append(a) or real(*a, **k))
    result = CliRunner().invoke(app, ["offtarget", "--task", name, "--limit", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    reference_ppl = rolling_word_perplexity(tiny_lm, held_out_documents()[:3])
    for path in paths:
        scores = store.read_run(path)[1]["offtarget"]["lm_eval"]["results"]
        assert scores["harness_imdb_heldout"]["word_perplexity"] == pytest.approx(reference_ppl, rel=1e-4)

"""Off-target evaluation: the harness's own metrics against hand computations, and lm-eval over a run's weights
against the same log-likelihoods computed directly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness import leaderboard, store
from harness.cli import app
from harness.offtarget import distinct, own_metrics
from tests.test_aclsum import tiny_aclsum


def test_distinct_n_counts_distinct_ngrams_over_all_ngrams():
    comps = [(1, 2, 3), (1, 2, 4), (5,)]
    assert distinct(comps, 1) == pytest.approx(5 / 7)  # 1 2 3 1 2 4 5: five distinct
    assert distinct(comps, 2) == pytest.approx(3 / 4)  # (1,2) (2,3) (1,2) (2,4)
    assert distinct(comps, 3) == pytest.approx(1.0)
    assert distinct([(1,), (2,)], 2) == 1.0  # no bigrams at all


def _record(prompt, tokens, weight, ref_logprob):
    return {"prompt_id": prompt, "tokens": list(tokens), "weight": weight, "ref_logprob": ref_logprob}


def test_own_metrics_on_equal_weights_are_plain_means():
    records = [_record("a", (1, 2), 0.5, -2.0), _record("a", (1, 2, 3, 4), 0.5, -6.0)]
    records += [_record("b", (7,), 0.5, -1.0), _record("b", (7,), 0.5, -3.0)]
    m = own_metrics(records, k=2, seed=0)
    assert m["length"]["mean"] == pytest.approx((3.0 + 1.0) / 2)
    assert m["ppl_ref"]["mean"] == pytest.approx((math.exp(8 / 6) + math.exp(4 / 2)) / 2)
    assert m["distinct_1"]["mean"] == pytest.approx((4 / 6 + 1 / 2) / 2)
    assert m["length"]["id"] == "length@1" and m["length"]["n_prompts"] == 2


def test_own_metrics_weigh_best_of_n_outputs_by_their_probability():
    records = [_record("a", (1,), 0.1, -1.0), _record("a", (1, 2, 3), 0.9, -3.0)]
    m = own_metrics(records, k=1000, seed=0)
    assert m["length"]["mean"] == pytest.approx(0.1 * 1 + 0.9 * 3)
    assert m["ppl_ref"]["mean"] == pytest.approx(math.exp((0.1 * 1 + 0.9 * 3) / (0.1 * 1 + 0.9 * 3)))
    # 1000 draws with those weights: both outputs drawn, so distinct-1 = 3 distinct tokens over all drawn tokens
    assert 3 / (1000 * 3) < m["distinct_1"]["mean"] < 3 / (1000 * 1)


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


def test_offtarget_on_a_bon_run_and_a_trained_run(tiny_lm, tmp_path):
    from harness.run import execute, resolve
    from tasks.imdb import held_out_documents

    name = tiny_aclsum(tiny_lm, tmp_path, "aclsum-offtarget").name
    out = tmp_path / "runs"
    runs = {m: execute(resolve(name, m), out).path for m in ("bon", "dpo")}
    reference_ppl = rolling_word_perplexity(tiny_lm, held_out_documents()[:3])
    found = {}
    for method, path in runs.items():
        before = store.read_json(path / store.RESULTS)
        proc = CliRunner().invoke(app, ["offtarget", str(path), "--limit", "3", "--out", str(out)])
        assert proc.exit_code == 0, proc.output
        after = store.read_json(path / store.RESULTS)
        assert {k: v for k, v in after.items() if k != "offtarget"} == before  # the rest is untouched
        entry = after["offtarget"]
        assert set(entry["metrics"]) == {"length", "distinct_1", "distinct_2", "distinct_3", "ppl_ref"}
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
    assert table["harness_imdb_heldout:word_perplexity"].str.startswith(f"{bon_ppl:.4f}").any()


def test_an_unknown_lm_eval_task_is_a_one_line_error(tiny_lm, tmp_path):
    from harness.run import execute, resolve

    name = tiny_aclsum(tiny_lm, tmp_path, "aclsum-offtarget-bad").name
    path = execute(resolve(name, "bon"), tmp_path / "runs").path
    before = (path / store.RESULTS).read_text()
    proc = CliRunner().invoke(app, ["offtarget", str(path), "--tasks", "no_such_task", "--out", str(tmp_path)])
    assert proc.exit_code == 2
    lines = [line for line in proc.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no_such_task" in lines[0] and "harness_imdb_heldout" in lines[0], proc.output
    assert (path / store.RESULTS).read_text() == before
    json.loads(before)


def test_offtarget_over_every_run_of_a_task_with_the_harness_metrics_only(tiny_lm, tmp_path):
    from harness.run import execute, resolve

    name = tiny_aclsum(tiny_lm, tmp_path, "aclsum-offtarget-all").name
    out = tmp_path / "runs"
    paths = [execute(resolve(name, "bon", {"n": n}), out).path for n in (1, 4)]
    neither = CliRunner().invoke(app, ["offtarget", "--out", str(out)])
    assert neither.exit_code == 2 and "give either RUN or --task" in neither.output
    result = CliRunner().invoke(app, ["offtarget", "--task", name, "--tasks", "", "--out", str(out)])
    assert result.exit_code == 0, result.output
    entries = [store.read_json(p / store.RESULTS)["offtarget"] for p in paths]
    assert all("lm_eval" not in e and e["settings"] == {"lm_eval_tasks": [], "limit": None} for e in entries)
    # best-of-4 weighs the pooled outputs differently from best-of-1, so their perplexities under pi_ref differ
    assert entries[0]["metrics"]["ppl_ref"]["mean"] != pytest.approx(entries[1]["metrics"]["ppl_ref"]["mean"])

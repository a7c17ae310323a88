"""The small policy of `imdb-small` (harness.smallpolicy): the shipped weights load offline with every file's
checksum checked, pretraining never read a held-out review, its data and schedule are what they say, and the
task runs on it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from harness import cli, smallpolicy, store
from harness.tasks.imdb import ImdbParams, load_reviews

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_policy_loads_offline_as_a_small_llama_with_head_size_64():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smallpolicy.model_dir()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama" and model.config.head_dim == 64
    assert 4e6 < model.num_parameters() < 7e6
    assert tokenizer.eos_token_id == model.config.eos_token_id != tokenizer.pad_token_id
    text = "This movie was one of the best I have seen, and the acting is superb."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text and len(ids) < len(text.split()) * 1.5


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
def test_a_changed_byte_in_a_shipped_file_is_one_line_naming_it(tmp_path, monkeypatch, name):
    copy = tmp_path / "imdb-small"
    shutil.copytree(smallpolicy.model_dir(), copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(store.CorruptError, match=f"{copy / name} does not match its checksum"):
        smallpolicy.model_dir(copy)

    monkeypatch.setattr(smallpolicy, "MODEL_DIR", copy)
    result = CliRunner().invoke(cli.app, ["run", "--method", "bon", "--task", "imdb-small", "--out", str(tmp_path)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert f"{copy / name} does not match its checksum" in lines[0]


def test_a_shipped_directory_without_its_checksums_is_refused(tmp_path):
    copy = tmp_path / "imdb-small"
    shutil.copytree(smallpolicy.model_dir(), copy)
    (copy / store.CHECKSUMS).unlink()
    with pytest.raises(store.CorruptError, match=f"{copy / store.CHECKSUMS} is missing"):
        smallpolicy.model_dir(copy)


def test_pretraining_reads_no_held_out_document_and_no_evaluation_prompts_review():
    """The corpus is every review outside the `imdb` tasks' held-out set: none of the documents whose perplexity
    `harness_imdb_heldout` measures, and none of the reviews that either task's evaluation prompts come from."""
    train, documents = smallpolicy.corpus()
    texts, _ = load_reviews()
    params = ImdbParams()
    held = [texts[i] for i in np.random.default_rng(params.seed).permutation(len(texts))[: params.n_held_out_reviews]]
    assert len(train) == len(texts) - params.n_held_out_reviews
    assert not {" ".join(t.split()[:96]) for t in train} & set(documents)
    n_eval = max(
        yaml.safe_load((REPO / "tasks" / f"{t}.yaml").read_text())["params"]["n_eval_prompts"]
        for t in ("imdb", "imdb-small")
    )
    assert not set(train) & set(held[:n_eval])


def test_training_rows_start_reviews_at_position_zero_and_pack_the_tails():
    eos, context = 0, 4
    docs = [[1] * 9, [2] * 2, [3] * 3]  # with EOS: 10, 3 and 4 tokens
    rows = smallpolicy.training_rows(docs, eos, context)
    assert rows.tolist() == [
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [3, 3, 3, 0],  # a review of exactly one row
        [1, 0, 2, 2],  # the tails, concatenated: 1 0 | 2 2 0 | (cut: 0 at the end does not fill a row)
    ]


def test_the_learning_rate_warms_up_then_decays_to_its_floor():
    config = smallpolicy.PretrainConfig(steps=10, warmup=2, lr=1.0, min_lr_ratio=0.1)
    lr = [smallpolicy.learning_rate(s, config) for s in range(11)]
    assert lr[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lr[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lr[1:], lr[2:], strict=False))


def test_best_of_n_runs_on_imdb_small(tmp_path):
    """The task on the shipped policy, cut down to two prompts: a stored run whose best-of-4 beats pi_ref on
    the proxy reward it selects on."""
    from harness.run import execute, resolve

    config = yaml.safe_load((REPO / "tasks" / "imdb-small.yaml").read_text())
    config["params"] |= {"n_eval_prompts": 2, "n_train_prompts": 2}
    config["evaluation"] = {"samples_per_prompt": 8, "reference_samples": 64, "pool_size": 64}
    path = tmp_path / "imdb-small-2.yaml"
    path.write_text(yaml.safe_dump(config))
    run = execute(resolve(str(path), "bon", {"n": 4}), tmp_path / "runs")
    m = run.results["metrics"]
    assert m["win_rate"]["n_prompts"] == 2 and 0.5 < m["win_rate"]["mean"] <= 1.0
    assert run.results["task"]["metadata"]["policy"] == smallpolicy.DESCRIPTION
    samples = store.read_samples(run.path)
    assert all(s["completion"] and len(s["tokens"]) <= 24 for s in samples)


@pytest.mark.slow
def test_pretraining_writes_a_sealed_policy_and_resumes_where_it_stopped(tmp_path):
    """The reproduce command end to end at a toy size: a sealed directory that loads; a second run with the same
    settings resumes from the last checkpoint and trains nothing more."""
    args = ["--work", str(tmp_path / "work"), "--dest", str(tmp_path / "model"), "--steps", "2", "--vocab-size", "300"]
    args += ["--hidden-size", "64", "--intermediate-size", "64", "--layers", "1", "--batch-rows", "2"]
    args += ["--eval-every", "1", "--checkpoint-every", "1"]
    smallpolicy.main(args)
    log = store.read_jsonl(tmp_path / "work" / "pretrain_log.jsonl")
    assert [e["step"] for e in log] == [1, 2] and all(np.isfinite(e["valid_loss"]) for e in log)
    first = (tmp_path / "model" / "model.safetensors").read_bytes()
    smallpolicy.main(args)
    assert store.read_jsonl(tmp_path / "work" / "pretrain_log.jsonl") == log
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == first
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smallpolicy.model_dir(tmp_path / "model"))
    assert model.config.vocab_size == 300

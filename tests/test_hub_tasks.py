"""The hub tasks (`tldr`, `hh`) built from local stand-ins of their three assets: prompts, reward reading and
the penalty for a completion without EOS, checked against the reward model called directly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

import harness.progress
from harness.hub import HFClassifierReward
from harness.policy import Completions, Prompt
from harness.task import TASKS, TaskConfig, build_task
from harness.tasks.hubtasks import question, single_turn


@pytest.fixture(scope="module")
def reward_dir(tiny_lm, tmp_path_factory):
    """A tiny scalar reward model (one output) with the tiny policy's tokenizer."""
    path = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    torch.manual_seed(1)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=2, n_head=2, num_labels=1)
    config.pad_token_id = tokenizer.pad_token_id
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _dataset(path, rows_by_split):
    path.mkdir()
    for split, rows in rows_by_split.items():
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(name, tiny_lm, reward_dir, data, **params):
    config = yaml.safe_load(Path(TASKS.target(name)).read_text())
    config["params"] |= {"policy": str(tiny_lm), "reward": str(reward_dir), "dataset": str(data)} | params
    config["generation"]["max_new_tokens"] = 6
    return TaskConfig.model_validate(config)


def _direct(reward_dir, texts, pairs=None):
    tokenizer = AutoTokenizer.from_pretrained(reward_dir)
    model = GPT2ForSequenceClassification.from_pretrained(reward_dir).eval()
    enc = tokenizer(texts, pairs, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits[:, 0].double().numpy()


def test_tldr_scores_post_and_summary_and_penalises_a_missing_eos(tiny_lm, reward_dir, tmp_path):
    posts = [
        {"prompt": f"SUBREDDIT: r/test\nTITLE: post {i}\nPOST: words of post {i}\nTL;DR:", "label": "x"}
        for i in range(6)
    ]
    data = _dataset(tmp_path / "tldr", {"train": posts[:3], "test": posts[3:]})
    task = build_task(_config("tldr", tiny_lm, reward_dir, data, n_eval_prompts=2, n_train_prompts=3))
    assert len(task.prompts) == 2 and len(task.train_prompts) == 3
    assert all(p.text.endswith("TL;DR:") for p in task.prompts)
    eos = task.reference.eos
    comps = Completions(tokens=[[(5, 6, eos), (5, 6)]], text=[[" a summary", " cut off"]])
    got = task.reward.score(task.prompts[:1], comps)[0]
    assert got[0] == pytest.approx(_direct(reward_dir, [task.prompts[0].text + " a summary"])[0], abs=1e-5)
    assert got[1] == -1.0  # no EOS: the penalty instead of the score
    assert "without EOS" in task.reward.label


def test_hh_keeps_single_turn_prompts_and_scores_question_answer_pairs(tiny_lm, reward_dir, tmp_path):
    one = [{"chosen": f"\n\nHuman: question {i}?\n\nAssistant: answer {i}", "rejected": "-"} for i in range(4)]
    two = [{"chosen": "\n\nHuman: a?\n\nAssistant: b\n\nHuman: c?\n\nAssistant: d", "rejected": "-"}]
    data = _dataset(tmp_path / "hh", {"train": one[:2] + two, "test": two + one[2:]})
    task = build_task(_config("hh", tiny_lm, reward_dir, data, n_eval_prompts=5, n_train_prompts=5))
    assert len(task.prompts) == 2 and len(task.train_prompts) == 2  # the two-turn dialogues are left out
    assert all(p.text.startswith("\n\nHuman: question") and p.text.endswith("\n\nAssistant:") for p in task.prompts)
    assert question(task.prompts[0]).startswith("question") and question(task.prompts[0]).endswith("?")
    comps = Completions(tokens=[[(5, 6)]], text=[[" an answer"]])
    got = task.reward.score(task.prompts[:1], comps)[0]
    expected = _direct(reward_dir, [question(task.prompts[0])], [" an answer"])
    assert got[0] == pytest.approx(expected[0], abs=1e-5)


def test_single_turn_extracts_the_prompt_and_its_question():
    dialogues = ["\n\nHuman: hi there\n\nAssistant: hello", "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d"]
    assert single_turn(dialogues) == ["\n\nHuman: hi there\n\nAssistant:"]
    assert question(Prompt("p", single_turn(dialogues)[0], ())) == "hi there"


def test_a_reward_model_shows_its_progress_on_a_terminal(reward_dir, monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(harness.progress, "_console", Console(file=buffer, force_terminal=True, width=120))
    reward = HFClassifierReward(str(reward_dir), None, "cpu", batch_size=2)
    texts = [["a good summary", "another", "a third one"]]
    scores = reward.score([Prompt("p", "post: ", (1,))], Completions(tokens=[[(1,), (2,), (3,)]], text=texts))
    assert scores[0].shape == (3,)
    assert "reward model" in buffer.getvalue() and "3/3" in buffer.getvalue()

"""Reward classifiers (exact against scikit-learn, plain-array cache) and the offline assets' error messages."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from harness import assets, sentiment, store

POS = ["a good film", "great acting and a good plot", "wonderful, good fun", "great great film", "loved it, good"]
NEG = ["a bad film", "awful acting and a bad plot", "boring, bad fun", "terrible terrible film", "hated it, bad"]
TEXTS = POS * 3 + NEG * 3
LABELS = np.array([1] * 15 + [0] * 15)


def test_logit_equals_scikit_learn_decision_function():
    clf = sentiment.train(TEXTS, LABELS, POS, np.ones(5, int), ngram_max=2, max_features=None, c=2.0)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    x = vec.fit_transform(TEXTS)
    ref = LogisticRegression(C=2.0, max_iter=2000).fit(x, LABELS)
    probe = ["good", "bad plot", "a great film with awful acting", "nothing known here", ""]
    np.testing.assert_allclose(clf.logit(probe), ref.decision_function(vec.transform(probe)), atol=1e-9)
    assert clf.meta["held_out_accuracy"] == 1.0


def test_cache_stores_plain_arrays_and_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("BON_HARNESS_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return sentiment.train(TEXTS, LABELS, NEG, np.zeros(5, int), ngram_max=1, max_features=None, c=1.0)

    a = sentiment.cached("tiny", {"k": 1}, build)
    b = sentiment.cached("tiny", {"k": 1}, build)
    assert len(calls) == 1
    np.testing.assert_array_equal(a.logit(POS + NEG), b.logit(POS + NEG))
    (path,) = (tmp_path / "rewards").iterdir()
    assert sorted(p.name for p in path.iterdir()) == ["checksums.json", "meta.json", "vocabulary.json", "weights.npz"]
    np.load(path / "weights.npz", allow_pickle=False)  # no pickled objects inside
    assert b.meta["content_hash"] in path.name
    sentiment.cached("tiny", {"k": 2}, build)
    assert len(calls) == 2
    # a cached classifier whose weights were changed after it was written is reported, never scored with
    vocabulary = path / "vocabulary.json"
    vocabulary.write_text(vocabulary.read_text().replace("1", "2"))
    with pytest.raises(store.CorruptError, match=r"vocabulary\.json does not match its checksum.*delete"):
        sentiment.cached("tiny", {"k": 1}, build)


def test_missing_asset_package_names_the_pip_package():
    with pytest.raises(assets.MissingAssetError, match=r"pip install some-package==1\.0"):
        assets.package_file("no_such_module_xyz", "data.csv", "some-package==1.0")


@pytest.mark.parametrize(
    ("task", "assets_named", "instead"),
    [
        ("imdb-gpt2", ["lvwerra/gpt2-imdb", "lvwerra/distilbert-imdb", "stanfordnlp/imdb"], "--task imdb"),
        (
            "tldr",
            ["cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr", "CarperAI/openai_summarize_tldr"],
            "--task aclsum",
        ),
        ("hh", ["OpenAssistant/reward-model-deberta-v3-large-v2", "Anthropic/hh-rlhf"], "--task aclsum"),
    ],
)
def test_hub_only_task_fails_fast_offline(tmp_path, task, assets_named, instead):
    """Offline, a task whose assets only the hub has stops before any download is tried (the hub's retries would
    take minutes: `timeout` bounds the run without timing a machine that may be busy)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--method", "bon", "--task", task, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert all(a in proc.stderr for a in assets_named) and instead in proc.stderr, proc.stderr
    assert not list(tmp_path.glob(f"{task}/bon/*"))


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    """Without a cache and without HF_HUB_OFFLINE, an unreachable hub is found out within the timeout."""
    from harness.hub import require_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("socket.create_connection", _refuse)
    with pytest.raises(assets.MissingAssetError, match="unreachable.*--task imdb"):
        require_hub("imdb-gpt2", ["lvwerra/gpt2-imdb"])


def _refuse(*args, **kwargs):
    raise OSError(111, "Connection refused")


@pytest.mark.slow
def test_gold_classifier_accuracy_on_the_packaged_reviews():
    from harness.task import load_task
    from harness.tasks.imdb import ImdbParams, reward_classifiers

    _, proxy, gold = reward_classifiers(ImdbParams.model_validate(load_task("imdb").params))
    assert gold.meta["held_out_accuracy"] >= 0.85
    assert gold.meta["held_out_accuracy"] > proxy.meta["held_out_accuracy"]

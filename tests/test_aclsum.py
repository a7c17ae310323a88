"""The `aclsum` task on its real data and embedding model, with a tiny stand-in policy."""

from __future__ import annotations

import numpy as np
import pytest

from harness.policy import Completions
from harness.task import build_task
from harness.tasks.aclsum import ASPECTS, load_papers


@pytest.fixture(scope="module")
def task(tiny_aclsum, tmp_path_factory):
    return build_task(tiny_aclsum(tmp_path_factory.mktemp("aclsum")))


def test_papers_load_as_plain_text_with_every_aspect():
    papers = load_papers("test")
    assert len(papers) == 100
    for p in papers:
        assert set(p["summary"]) == set(ASPECTS) and all(p["summary"].values())
        assert " ." not in p["abstract"] and " ," not in p["abstract"] and "( " not in p["abstract"]


def test_prompts_cover_distinct_papers_and_cycle_aspects(task):
    ids = [p.id for p in task.prompts + task.train_prompts]
    assert len(set(ids)) == len(ids)
    papers = [i.rsplit("-", 1)[0] for i in ids[:3]]
    assert len(set(papers)) == 3  # the first prompts come from different papers
    assert [i.rsplit("-", 1)[1] for i in ids[:3]] == list(ASPECTS)
    test_ids = {p["id"] for p in load_papers("test")}
    assert all(p.id.split("-", 1)[1].rsplit("-", 1)[0] in test_ids for p in task.prompts)
    assert "In one sentence, state" in task.prompts[0].text


def _score(reward, prompt, texts):
    return reward.score([prompt], Completions(tokens=[[(1,)] * len(texts)], text=[texts]))[0]


def test_rewards_read_the_abstract_the_human_summary_and_the_length(task):
    prompt = task.prompts[0]
    item = task.reward.items[prompt.id]
    other = task.reward.items[task.prompts[1].id]
    abstract_words = len(item.source.split())
    proxy = _score(task.reward, prompt, [item.source, item.reference, other.source])
    # the abstract itself is as similar to the abstract as can be, less its length penalty
    assert proxy[0] == pytest.approx(1.0 - 0.02 * max(0, abstract_words - 30), abs=1e-5)
    assert proxy[1] > proxy[2]  # this paper's summary is closer to its abstract than another paper's abstract
    gold = _score(task.gold_reward, prompt, [item.reference, item.source, other.reference])
    assert gold[0] == pytest.approx(1.0, abs=1e-5)
    assert gold[1] > gold[2]
    rouge = _score(task.extra_metrics["rouge_l"], prompt, [item.reference, "", other.reference])
    assert rouge[0] == pytest.approx(1.0) and rouge[1] == 0.0 and 0 <= rouge[2] < 1


def test_a_longer_summary_pays_the_length_penalty(task):
    prompt = task.prompts[0]
    text = task.reward.items[prompt.id].reference
    words = text.split()
    padded = " ".join(words + words[: 40 - len(words)] * 2)
    sim = task.reward.embeddings.encode([padded]) @ task.reward.embeddings.of(task.reward.items[prompt.id].source)
    expected = float(sim[0]) - 0.02 * (len(padded.split()) - 30)
    assert _score(task.reward, prompt, [padded])[0] == pytest.approx(expected, abs=1e-6)


def test_bon_and_a_trained_method_run_end_to_end(tiny_aclsum, tmp_path):
    from harness.run import execute, resolve

    name = tiny_aclsum(tmp_path, "aclsum-tiny-runs").name  # another task file: another name
    bon = execute(resolve(name, "bon", {"n": 4}), tmp_path / "runs").results
    assert {"reward", "gold_reward", "win_rate", "rouge_l", "kl_bon_beirami"} <= set(bon["metrics"])
    assert bon["metrics"]["rouge_l"]["id"] == "rouge_l@1"
    assert [p["n"] for p in bon["bon_curve"]] == [1, 2, 3, 4] and "rouge_l" in bon["bon_curve"][0]
    dpo = execute(resolve(name, "dpo"), tmp_path / "runs").results
    assert {"rouge_l", "kl_mc", "kl_k3"} <= set(dpo["metrics"]) and dpo["cost"]["training_steps"] == 2
    for results in (bon, dpo):
        assert np.isfinite(results["metrics"]["rouge_l"]["mean"])


def test_asking_for_more_prompts_than_the_split_has_is_a_clear_error(tiny_aclsum, tmp_path):
    from harness.task import ConfigError

    config = tiny_aclsum(tmp_path, "aclsum-many")
    config.params |= {"n_eval_prompts": 297, "max_source_tokens": 100}
    with pytest.raises(ConfigError, match="297 test prompts asked for; the test split has .* max_source_tokens = 100"):
        build_task(config)

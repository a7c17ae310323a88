"""The trainer that every training method shares, so that leaderboard differences come from the objectives and
not from the trainers: the copied model (optionally with LoRA adapters), AdamW, the seeded prompt order,
clipped updates, gradient averaging under DDP, checkpoint and resume, logging and the cost account."""

from __future__ import annotations

import copy
import io
import logging
import pickle
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harness import seeding, store
from harness.distributed import process_state
from harness.method import RunContext, TrainingCost
from harness.policy import Prompt, sequence_logprobs
from harness.store import POLICY, TRAIN_LOG, CorruptError, write_jsonl
from harness.task import ConfigError
from harness.training.anchor import Anchor
from harness.training.config import TrainConfig
from harness.training.trained import TrainedPolicy

log = logging.getLogger(__name__)


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
        self.window: dict[str, list[float]] = {}  # each value of the steps since the last logged one
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
        found = store.checkpoints(self.ctx.checkpoint_dir)
        return found[-1] if found else None

    def _resume(self) -> None:
        path = self._checkpoint
        if path is None:
            return
        remedy = "run the same command with --force to train from step 0, or `harness gc` to remove it"
        data = store.read_checkpoint(path, remedy)
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
        self.window = dict(state.get("window", {}))  # a checkpoint written before windows were logged has none
        self.t0 -= float(state.get("seconds", 0.0))  # training time accumulates across resumes
        log.warning("resuming training from %s after step %d", path, self.start - 1)

    def checkpoint(self, step: int) -> None:
        """Save after `step` every `checkpoint_every` steps (harness.store.write_checkpoint: atomically, under a
        name that carries the file's checksum, the older ones removed)."""
        directory = self.ctx.checkpoint_dir
        if directory is None or (step + 1) % self.config.checkpoint_every or not self.dist.is_main_process:
            return
        state = {
            "model": self.model.state_dict(),
            "extra": [p.detach() for p in self._saved()],
            "optimizer": self.optimizer.state_dict(),
            "step": step,
            "tokens": self.tokens,
            "history": self.history,
            "window": self.window,
            "seconds": time.perf_counter() - self.t0,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        store.write_checkpoint(directory, buffer.getvalue())

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
        seed = seeding.step_seed(self.ctx.seed, step, "probe")
        with torch.no_grad():
            c = task.make_policy(self.model).sample(prompts, count, seed)
        own = sequence_logprobs(c.token_logprobs)  # type: ignore[arg-type]
        ref = sequence_logprobs(task.reference.token_logprobs(prompts, c.tokens))
        return {
            "reward": float(np.concatenate(task.reward.score(prompts, c)).mean()),
            "kl": float(np.concatenate([a - b for a, b in zip(own, ref, strict=True)]).mean()),
        }

    def log(self, step: int, **values: float) -> None:
        """Record this step's values; at a logged step, write each value's mean over the steps since the last
        logged one (one step's rollouts are too few to show a plateau)."""
        for key, value in values.items():
            self.window.setdefault(key, []).append(value)
        if self.due(step):
            means = {key: float(np.mean(v)) for key, v in self.window.items()}
            self.history.append({"step": step, **means})
            self.window = {}
            self.status = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
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

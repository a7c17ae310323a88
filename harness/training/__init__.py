"""The one training core that every fine-tuning method uses, so that leaderboard differences come from the
objectives and not from the trainers: the same optimizer (AdamW), gradient clipping, batching and logging.

Which file does what (a method author reads the path they extend):

- `config.py`: the configs, `TrainConfig` (shared by every method), `PPOConfig`, `OfflineConfig`.
- `trainer.py`: `Trainer`, the shared machinery: model copy and LoRA, AdamW, prompt order, DDP, checkpoint and
  resume, logging.
- `trained.py`: `TrainedPolicy`, what training returns, and `load_trained` for a run's saved weights.
- `logprobs.py`: per-token log-probabilities of completions with gradients, and built on them `nll` (an SFT
  loss) and `sequence_logprob` (log pi(y | x)).
- `onpolicy.py`: PPO and the on-policy loop `train_on_policy` (ppo, vbon, bond, jbond).
- `offline.py`: the offline loop `train_offline` (dpo, bonbon).
- `pairs.py`: best-and-worst pairs from the reference pool, `PoolPairs` (dpo, bonbon).
- `anchor.py`: BOND's `Anchor`, the moving copy of the policy that jbond and iterative bond take their KL
  penalty against.
"""

import warnings

from harness.training.anchor import Anchor
from harness.training.config import OfflineConfig, PPOConfig, TrainConfig
from harness.training.logprobs import completion_forward, nll, sequence_logprob
from harness.training.offline import PairLoss, train_offline
from harness.training.onpolicy import (
    ExtraLoss,
    SequenceReward,
    gae,
    linear_decay,
    masked_mean_std,
    returns_to_go,
    train_on_policy,
)
from harness.training.pairs import PoolPairs, pool_extremes
from harness.training.trained import TrainedPolicy, load_trained
from harness.training.trainer import Trainer

# peft (0.21) reads transformers' deprecated `is_gradient_checkpointing` when it wraps or loads a LoRA model, so
# every LoRA run printed a FutureWarning about code that is not ours; only that message is silenced.
warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)

__all__ = [
    "Anchor",
    "ExtraLoss",
    "OfflineConfig",
    "PPOConfig",
    "PairLoss",
    "PoolPairs",
    "SequenceReward",
    "TrainConfig",
    "TrainedPolicy",
    "Trainer",
    "completion_forward",
    "gae",
    "linear_decay",
    "load_trained",
    "masked_mean_std",
    "nll",
    "pool_extremes",
    "returns_to_go",
    "sequence_logprob",
    "train_offline",
    "train_on_policy",
]

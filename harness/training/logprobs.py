"""Log-probabilities of completions under the model in training, with gradients: the forward pass that both
training paths and the methods' losses are built on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.policy import Prompt


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
    values = None
    if value_head is not None:
        # detached: the value regression must not move the policy's logits through the shared trunk
        values = value_head(out.hidden_states[-1][rows, index].detach().float())[..., 0] * mask
    return lp, values, mask


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

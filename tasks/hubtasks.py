"""Builders of the paper tasks that need the Hugging Face hub (or a local cache): `tldr` and `hh`.

Offline, each fails at once, naming the missing assets and the offline task to use instead (`aclsum`).
Every hub id can also be a local directory, which is how the tests build them with tiny models and data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from harness.backends import BackendParams, load_policy, resolve_device
from harness.hub import HFClassifierReward, require_hub
from harness.policy import Prompt
from harness.task import Task, TaskConfig


class HubTaskParams(BackendParams):
    policy: str = Field(description="Hub id (or local directory) of the reference policy.")
    reward: str = Field(description="Hub id (or local directory) of the proxy reward model.")
    gold_reward: str | None = Field(None, description="A larger reward model of the same kind, as the gold reward.")
    dataset: str = Field(description="Hub id (or local directory) of the prompt dataset.")
    eval_split: str = "test"
    train_split: str = "train"
    seed: int = Field(0, description="Seed of the shuffle of the prompts.")
    n_eval_prompts: int = Field(64, ge=1)
    n_train_prompts: int = Field(1024, ge=0)
    max_prompt_tokens: int = Field(512, ge=1, description="Longer prompts are left out.")
    no_eos_reward: float | None = Field(
        None, description="The reward of a completion cut off without EOS (None: no penalty)."
    )


def _build(
    config: TaskConfig,
    prompt_texts: Callable[[Any], list[str]],
    pair: bool,
    context: Callable[[Prompt], str] | None = None,
) -> Task:
    params = HubTaskParams.model_validate(config.params)
    models = [params.policy, params.reward] + ([params.gold_reward] if params.gold_reward else [])
    require_hub(config.name, models, [params.dataset], offline_task="aclsum")
    from datasets import load_dataset

    device = resolve_device(params.device)
    loaded = load_policy(params.policy, config.generation, params)
    tokenizer = loaded.tokenizer

    def prompts(split: str, n: int) -> list[Prompt]:
        out: list[Prompt] = []
        if n == 0:
            return out
        rows = load_dataset(params.dataset, split=split).shuffle(seed=params.seed)
        for i, text in enumerate(prompt_texts(rows)):
            ids = tuple(tokenizer(text, add_special_tokens=False).input_ids)
            if len(ids) <= params.max_prompt_tokens:
                out.append(Prompt(id=f"{config.name}-{split}-{i}", text=text, tokens=ids))
            if len(out) == n:
                break
        return out

    penalty: dict[str, Any] = {}
    if params.no_eos_reward is not None:
        penalty = {"eos_token_id": tokenizer.eos_token_id, "no_eos_reward": params.no_eos_reward}

    def reward(repo: str) -> HFClassifierReward:
        return HFClassifierReward(repo, None, device, params.batch_size, pair=pair, context=context, **penalty)

    return Task(
        config=config,
        prompts=prompts(params.eval_split, params.n_eval_prompts),
        train_prompts=prompts(params.train_split, params.n_train_prompts),
        reference=loaded.reference,
        reward=reward(params.reward),
        gold_reward=reward(params.gold_reward) if params.gold_reward else None,
        model=loaded.model,
        make_policy=loaded.make_policy,
        metadata={"policy": params.policy, "reward": params.reward, "dataset": params.dataset},
    )


def build_tldr(config: TaskConfig) -> Task:
    """Reddit TL;DR (CarperAI/openai_summarize_tldr): each prompt is a post ending in 'TL;DR:'; the reward model
    reads prompt + summary."""
    return _build(config, lambda rows: list(rows["prompt"]), pair=False)


HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant:"


def single_turn(dialogues: list[str]) -> list[str]:
    """The prompts ('\\n\\nHuman: ...\\n\\nAssistant:') of the dialogues with exactly one human turn."""
    out = []
    for d in dialogues:
        if d.count(HUMAN.strip()) == 1 and ASSISTANT in d:
            out.append(d[: d.index(ASSISTANT) + len(ASSISTANT)])
    return out


def question(prompt: Prompt) -> str:
    """The human's message of a single-turn prompt, without the dialogue markup."""
    return prompt.text.removesuffix(ASSISTANT).strip().removeprefix(HUMAN.strip()).strip()


def build_hh(config: TaskConfig) -> Task:
    """Anthropic/hh-rlhf, single-turn prompts; the reward model (OpenAssistant's DeBERTa) reads the pair
    (question, answer)."""
    return _build(config, lambda rows: single_turn(list(rows["chosen"])), pair=True, context=question)

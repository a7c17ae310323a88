"""A task's params are as strict as a method's config: an unknown key, a non-finite number or a boolean given for a
number (YAML reads `n_prompts: yes` as true) is refused in one line naming the field, for every task builder."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from harness.backends import BackendParams
from harness.task import ConfigError, build_task, load_task
from harness.tasks.aclsum import AclsumParams
from harness.tasks.hubtasks import HubTaskParams
from harness.tasks.imdb import HubImdbParams, ImdbParams
from harness.tasks.toy import ToyParams

HUB = {"policy": "p", "reward": "r", "dataset": "d"}


@pytest.mark.parametrize(
    ("model", "base", "field"),
    [
        (ToyParams, {"token_rewards": [0, 1, 1, 2, 2, 3]}, "n_prompts"),
        (ImdbParams, {}, "n_eval_prompts"),
        (HubImdbParams, {}, "seed"),
        (AclsumParams, {}, "max_words"),
        (HubTaskParams, HUB, "n_train_prompts"),
        (BackendParams, {}, "batch_size"),
        (BackendParams, {}, "kv_cache_gib"),
    ],
)
def test_a_boolean_for_a_number_is_refused_in_every_params_model(model: type[BaseModel], base: dict, field: str):
    model.model_validate(base | {field: 2})
    with pytest.raises(ValidationError, match="Input should be a number, not a boolean"):
        model.model_validate(base | {field: True})


def test_nested_params_are_strict_too():
    with pytest.raises(ValidationError, match="Input should be a number, not a boolean"):
        ImdbParams.model_validate({"proxy": {"ngram_max": True}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ImdbParams.model_validate({"gold": {"ngram": 2}})


def test_building_a_task_with_a_boolean_param_is_one_line_naming_it():
    config = load_task("toy")
    bad = config.model_copy(update={"params": config.params | {"n_prompts": True}})
    with pytest.raises(ConfigError) as e:
        build_task(bad)
    assert str(e.value).splitlines() == [str(e.value)] and "n_prompts = True" in str(e.value)

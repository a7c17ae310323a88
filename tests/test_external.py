"""A policy trained elsewhere, ranked like any method: its checkpoint (`-p model=DIR`: full weights or a peft adapter)
or a file of its outputs (`-p outputs=FILE`), identified by content, with its exact KL and win rate on `toy`; a
TRL-trained policy on the board beside the published rows; bad input in one line, nothing stored."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import store
from harness.methods.external import files_sha256
from harness.offtarget import offtarget
from harness.run import resolve
from harness.task import build_task, load_task
from tests.conftest import harness

REPO = Path(__file__).resolve().parents[1]
EXACT = ("reward_exact", "win_rate_exact", "kl_exact")


def invoke(*args: str):
    return harness(*args, env={"COLUMNS": "1000"})  # a run's path, a board's row: one line


def run(out: Path, *params: str, method: str = "external", task: str = "toy") -> tuple[Path, dict]:
    """A run through the command line: its directory and results."""
    result = invoke("run", "--method", method, "--task", task, *params, "--out", str(out))
    assert result.exit_code == 0, result.output
    path = Path(result.output.split("run: ")[1].split()[0])
    return path, store.read_run(path)[1]


def means(results: dict, names=None) -> dict[str, float]:
    return {k: m["mean"] for k, m in results["metrics"].items() if names is None or k in names}


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return " ".join(lines[0].split())


def nothing_stored(out: Path) -> bool:
    return not out.exists() or not (list(out.glob("*/*/*")) or list(out.rglob("results.json")))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """A dpo run on toy with a LoRA adapter: its directory (policy/ holds the adapter) and results."""
    out = tmp_path_factory.mktemp("dpo")
    return run(out, "-p", "steps=6", "-p", "lora_rank=4", "-p", "lr=0.03", method="dpo")


def test_a_saved_policy_ranks_with_the_numbers_of_the_run_that_trained_it(trained, tmp_path):
    dpo, dpo_results = trained
    assert (dpo / store.POLICY / "adapter_config.json").is_file()
    path, results = run(tmp_path / "runs", "-p", f"model={dpo / store.POLICY}")
    assert dpo_results["metrics"]["kl_exact"]["mean"] > 0.05  # the policy left pi_ref
    assert set(results["metrics"]) == set(dpo_results["metrics"])  # exact, Monte Carlo and k3 alike
    for name, m in results["metrics"].items():  # same weights, same numbers
        assert m["mean"] == pytest.approx(dpo_results["metrics"][name]["mean"], rel=1e-12, abs=1e-12), name
        assert m["ci95"] == pytest.approx(dpo_results["metrics"][name]["ci95"], rel=1e-12, abs=1e-12), name
    assert (path / store.POLICY / "adapter_config.json").is_file()  # the run keeps the weights it evaluated
    config = store.read_config(path)
    assert config["operational"] == {"model": str(dpo / store.POLICY), "outputs": None}
    sha = files_sha256(dpo / store.POLICY)
    assert config["method"] == {"name": "external", "sha256": sha, "label": sha[:12]}


def test_a_run_is_named_by_the_checkpoint_s_content_not_its_path(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    policy = trained[0] / store.POLICY
    moved = tmp_path / "moved"
    shutil.copytree(policy, moved)
    spec = resolve("toy", "external", {"model": str(policy)})
    assert resolve("toy", "external", {"model": str(moved)}).hash() == spec.hash()
    assert resolve("toy", "external", {"model": str(moved), "label": "mine"}).hash() != spec.hash()
    weights = moved / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 1e-3 for k, v in tensors.items()}, weights)  # a changed checkpoint: a new run
    assert resolve("toy", "external", {"model": str(moved)}).hash() != spec.hash()


def test_a_stored_run_is_evaluated_again_without_its_checkpoint(trained, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(trained[0] / store.POLICY, moved)
    out = tmp_path / "runs"
    path, results = run(out, "-p", f"model={moved}")
    again = invoke(
        "run", "--method", "external", "--task", "toy", "-p", f"model={trained[0] / 'policy'}", "--out", str(out)
    )
    assert "already finished" in again.output  # the same checkpoint elsewhere is the same run
    shutil.rmtree(moved)
    result = invoke("evaluate", str(path), "--out", str(out))
    assert result.exit_code == 0, result.output
    latest = store.latest_evaluation(path)
    assert latest is not None and means(latest[1]) == means(results)


def test_outputs_exported_from_a_policy_rank_as_the_policy_does(trained, tmp_path):
    dpo, dpo_results = trained
    file = tmp_path / "outputs.jsonl"
    result = invoke("export", "--task", "toy", "--model", str(dpo / store.POLICY), "--to", str(file))
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in file.read_text().splitlines()]
    assert len(lines) == 8 * 256 and set(lines[0]) == {
        "prompt_id",
        "prompt",
        "prompt_tokens",
        "completion",
        "tokens",
        "logprob",
    }
    out = tmp_path / "runs"
    path, results = run(out, "-p", f"outputs={file}", "-p", "label=dpo-samples")
    # the file holds the outputs that evaluating the checkpoint samples, with their log-probabilities
    assert means(results) == means(dpo_results, {"reward", "win_rate", "kl_mc"})
    assert results["cost"]["outputs_only"] is True and results["cost"]["training_steps"] == 0

    # without log-probabilities: no KL, and the board says why
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "logprob"}) + "\n" for x in lines))
    _, bare_results = run(out, "-p", f"outputs={bare}", "-p", "label=no-logprobs")
    assert means(bare_results) == means(dpo_results, {"reward", "win_rate"})
    board = invoke("leaderboard", "build", "--task", "toy", "--out", str(out))
    assert board.exit_code == 0, board.output
    text = " ".join(board.output.split())
    assert "`-` in KL: no KL estimator applies" in text and "(external label=no-logprobs)" in text

    # off-target: the harness's metrics from the outputs, no lm-eval (there are no weights)
    entry = offtarget(path)
    assert "length" in entry["metrics"] and "lm_eval" not in entry
    assert entry["notes"] == ["lm-eval not run: the run's outputs came from a file, with no weights to evaluate"]


def _toy_tokenizer():
    """A word-level tokenizer of the toy task's texts ('t0 t3 t5'), which TRL needs beside the model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    task = build_task(load_task("toy"))
    vocab = {f"t{i}": i for i in range(task.model.config.vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="t0")


def _sequence_logprobs(model, ids: torch.Tensor, start: int) -> np.ndarray:
    """log p(ids[start:] | ids[:start]) of each row, from the model's logits."""
    with torch.no_grad():
        lp = model(ids).logits[:, start - 1 : -1].double().log_softmax(-1)
    return lp.gather(-1, ids[:, start:, None]).squeeze(-1).sum(1).numpy()


def _enumerated(task, model) -> tuple[float, float]:
    """Exact KL(pi || pi_ref) and win rate of `model` on `task`, by enumeration from the two models' logits, with
    nothing of the harness's metrics: mean over prompts."""
    weights = np.array(task.config.params["token_rewards"], float)
    length, vocab = task.config.generation.max_new_tokens, task.model.config.vocab_size
    support = torch.cartesian_prod(*[torch.arange(vocab)] * length)
    reward = weights[support.numpy()].sum(axis=1)
    kls, wins = [], []
    for prompt in task.prompts:
        ids = torch.cat([torch.tensor(prompt.tokens).expand(len(support), -1), support], dim=1)
        lp, lp_ref = (_sequence_logprobs(m, ids, len(prompt.tokens)) for m in (model, task.model))
        p, p_ref = np.exp(lp), np.exp(lp_ref)
        kls.append(float(p @ (lp - lp_ref)))
        beats = (reward[:, None] > reward[None, :]) + 0.5 * (reward[:, None] == reward[None, :])
        wins.append(float(p @ beats @ p_ref))
    return float(np.mean(kls)), float(np.mean(wins))


def test_a_policy_trained_with_trl_lands_on_the_board_with_its_exact_kl_and_win_rate(tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    class PreTokenized(DPOTrainer):
        """TRL's DPO on pairs given as token ids (the toy task's vocabulary has no EOS for TRL to append)."""

        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    task = build_task(load_task("toy"))
    samples = task.reference.sample(task.prompts, 16, 0)
    pairs = []  # pairs of reference samples labelled by the proxy reward, as the toy task's dpo draws them
    for prompt, row, r in zip(task.prompts, samples.tokens, task.reward.score(task.prompts, samples), strict=True):
        for a, b in zip(range(0, 16, 2), range(1, 16, 2), strict=True):
            if r[a] != r[b]:
                win, lose = (a, b) if r[a] > r[b] else (b, a)
                pairs.append(
                    {"prompt_ids": list(prompt.tokens), "chosen_ids": list(row[win]), "rejected_ids": list(row[lose])}
                )
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), max_steps=6, per_device_train_batch_size=16, learning_rate=2e-2, beta=0.1,
        report_to="none", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = PreTokenized(
        model=copy.deepcopy(task.model).train(),
        ref_model=copy.deepcopy(task.model),
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=_toy_tokenizer(),
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "trl-policy"))

    out = tmp_path / "runs"
    _, results = run(out, "-p", f"model={tmp_path / 'trl-policy'}", "-p", "label=trl-dpo")
    kl, win = _enumerated(task, AutoModelForCausalLM.from_pretrained(tmp_path / "trl-policy").eval())
    assert kl > 0.05 and win > 0.55  # TRL's DPO moved the policy towards higher reward
    assert results["metrics"]["kl_exact"]["mean"] == pytest.approx(kl, rel=1e-9)
    assert results["metrics"]["win_rate_exact"]["mean"] == pytest.approx(win, rel=1e-9)

    board = invoke(
        "leaderboard",
        "build",
        "--task",
        "toy",
        "--out",
        str(out),
        "--with-published",
        "--dest",
        str(REPO / "leaderboards"),
    )
    assert board.exit_code == 0, board.output
    row = next(line for line in board.output.splitlines() if "external" in line)
    assert "label=trl-dpo" in row and "local" in row and "sha256" not in row
    assert f"{kl:.4f} [" in row and f"{win:.4f} [" in row
    assert sum("published" in line for line in board.output.splitlines()) > 10  # ranked among the published rows


def _gpt2(path: Path, vocab: int) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab, n_positions=8, n_embd=16, n_layer=1, n_head=2, bos_token_id=None, eos_token_id=None
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def _bad_inputs(tmp_path: Path, task) -> dict[str, tuple[list[str], str]]:
    """name -> (-p arguments, what the one error line says)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "file").write_text("")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(_gpt2(tmp_path / "gpt2-6", 6) / "config.json", no_weights / "config.json")
    good = [{"prompt_id": p.id, "completion": "t1 t2 t3", "tokens": [1, 2, 3]} for p in task.prompts]

    def outputs(name: str, lines: list) -> str:
        (tmp_path / name).write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
        return f"outputs={tmp_path / name}"

    missing, foreign = tmp_path / "missing", [{**good[0], "prompt_id": "imdb-3"}, {**good[0], "prompt_id": "x"}]
    foreign += [{"prompt": "t9", "completion": "t1", "tokens": [1, 2, 3]}, {**good[1], "prompt_id": "y"}]
    swapped = {**good[0], "prompt": task.prompts[1].text}
    return {
        "missing path": ([f"model={missing}"], f"model = '{missing}': no such directory"),
        "missing file": ([f"outputs={missing}"], f"outputs = '{missing}': no such file"),
        "a file as the model": ([f"model={tmp_path / 'file'}"], "not a directory"),
        "non-model directory": (
            [f"model={empty}"],
            "neither a transformers model directory (no config.json) nor a peft adapter directory "
            "(no adapter_config.json)",
        ),
        "no weights": ([f"model={no_weights}"], "cannot be loaded as a policy of task 'toy'"),
        "mismatched vocabulary": (
            [f"model={_gpt2(tmp_path / 'gpt2-7', 7)}"],
            f"the model at {tmp_path / 'gpt2-7'} has a vocabulary of 7 tokens, the reference model of task 'toy' 6",
        ),
        "neither": ([], "give the policy as -p model=DIR (a checkpoint) or as -p outputs=FILE"),
        "both": ([f"model={tmp_path / 'gpt2-6'}", outputs("good.jsonl", good)], "give the policy as -p model=DIR"),
        "changed since": (
            [outputs("good2.jsonl", good), f"sha256={'ab' * 32}"],
            f"not the run's {'ab' * 32}: it has changed",
        ),
        "bad label": ([outputs("good3.jsonl", good), "label=a b"], "label = 'a b'"),
        "not json": ([outputs("not-json.jsonl", [good[0], "{oops"])], "line 2 is not JSON"),
        "not an object": ([outputs("list.jsonl", [[1, 2]])], "line 1 holds list, not an object"),
        "empty file": ([outputs("empty.jsonl", [])], "holds no outputs"),
        "no completion": ([outputs("no-completion.jsonl", [{"prompt_id": "toy-0"}])], "line 1 has no completion"),
        "no prompt": ([outputs("no-prompt.jsonl", [{"completion": "t1 t2 t3"}])], "line 1 names no prompt"),
        "no tokens on toy": (
            [outputs("no-tokens.jsonl", [{"prompt_id": "toy-0", "completion": "t1 t2 t3"}])],
            "line 1 has no tokens, and task 'toy' has no tokenizer",
        ),
        "not a toy completion": (
            [outputs("short.jsonl", [{**good[0], "tokens": [1, 2]}, *good[1:]])],
            "line 1: tokens [1, 2] are not a completion of task 'toy'",
        ),
        "too long": (
            [outputs("long.jsonl", [{**good[0], "tokens": [1, 2, 3, 4]}])],
            "a completion of 4 tokens, longer than task 'toy' generates (max_new_tokens = 3)",
        ),
        "out of the vocabulary": (
            [outputs("oov.jsonl", [{**good[0], "tokens": [1, 2, 9]}])],
            "tokens outside the task's vocabulary of 6 ids",
        ),
        "positive logprob": (
            [outputs("plus.jsonl", [{**good[0], "logprob": 0.5}])],
            "logprob = 0.5 is not a log-probability",
        ),
        "some logprobs": (
            [outputs("some.jsonl", [{**good[0], "logprob": -1.0}, *good[1:]])],
            "line 2 has no logprob while others do",
        ),
        "foreign prompts": (
            [outputs("foreign.jsonl", [*good, *foreign])],
            "holds outputs of prompts that task 'toy' does not have: line 9 (prompt_id 'imdb-3'), line 10 (prompt_id "
            "'x'), line 11 (prompt 't9') and 1 more",
        ),
        "another prompt's text": (
            [outputs("swapped.jsonl", [swapped, *good])],
            f"line 1 (prompt_id 'toy-0' with the text '{task.prompts[1].text}')",
        ),
        "lacking prompts": (
            [outputs("lacking.jsonl", good[:4])],
            "has no output for 4 of the 8 evaluation prompts of task 'toy': toy-4, toy-5, toy-6 and 1 more",
        ),
        "weighted": (
            [outputs("weighted.jsonl", [{**good[0], "weight": 0.9}, {**good[0], "weight": 0.1}, *good[1:]])],
            "the outputs of prompt 'toy-0' carry unequal weights",
        ),
    }


BAD = [
    "missing path", "missing file", "a file as the model", "non-model directory", "no weights", "mismatched vocabulary",
    "neither", "both", "changed since", "bad label", "not json", "not an object", "empty file", "no completion",
    "no prompt", "no tokens on toy", "not a toy completion", "too long", "out of the vocabulary", "positive logprob",
    "some logprobs", "foreign prompts", "another prompt's text", "lacking prompts", "weighted",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2_with_nothing_stored(tmp_path, toy, case):
    params, expected = _bad_inputs(tmp_path, toy)[case]
    out = tmp_path / "runs"
    args = [a for p in params for a in ("-p", p)]
    line = one_error_line(invoke("run", "--method", "external", "--task", "toy", *args, "--out", str(out)))
    assert expected in line, line
    assert nothing_stored(out)


def test_on_a_task_with_a_tokenizer(tiny_lm, tiny_aclsum, tmp_path):
    """The reference's own checkpoint is pi_ref (KL 0 to rounding); outputs read from their text alone score as the
    same outputs; a checkpoint with another tokenizer is one line naming both tokenizers."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    name = tiny_aclsum(tmp_path, "aclsum-external").name
    out = tmp_path / "runs"
    path, results = run(out, "-p", f"model={tiny_lm}", task=name)
    for estimator in ("kl_mc", "kl_k3"):
        assert abs(results["metrics"][estimator]["mean"]) < 1e-5, estimator

    file = tmp_path / "outputs.jsonl"
    assert invoke("export", "--task", name, "--to", str(file)).exit_code == 0  # pi_ref's samples
    _, from_file = run(out, "-p", f"outputs={file}", task=name)
    assert means(from_file, {"reward", "win_rate", "kl_mc"}) == means(results, {"reward", "win_rate", "kl_mc"})

    # text alone (where it reads as no more tokens than the task generates; tokens elsewhere): the same rewards
    lines = [json.loads(x) for x in file.read_text().splitlines()]
    tokenizer = build_task(load_task(name)).reference.tokenizer  # type: ignore[attr-defined]
    fits = [len(tokenizer(x["completion"], add_special_tokens=False).input_ids) <= 8 for x in lines]
    assert any(fits)
    text_only = tmp_path / "text-only.jsonl"
    keys = ("prompt", "completion")
    mixed = [{k: x[k] for k in (keys if fit else (*keys, "tokens"))} for x, fit in zip(lines, fits, strict=True)]
    text_only.write_text("".join(json.dumps(x) + "\n" for x in mixed))
    from_text, _ = run(out, "-p", f"outputs={text_only}", task=name)
    sampled = {(r["prompt_id"], r["completion"]): r for r in store.read_samples(path)}
    read = store.read_samples(from_text)
    assert len(read) == len(lines) and all(r["logprob"] is None for r in read)
    for r in read:
        expected = sampled[r["prompt_id"], r["completion"]]
        assert (r["reward"], r["gold_reward"]) == (expected["reward"], expected["gold_reward"])

    other = tmp_path / "other-tokenizer"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [x["completion"][::-1] for x in lines] * 50 + ["abcdefghijklmnopqrstuvwxyz"],
        vocab_size=600,
        special_tokens=["<eos>"],
    )
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>").save_pretrained(other)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(tiny_lm / f, other / f)
    line = one_error_line(
        invoke("run", "--method", "external", "--task", name, "-p", f"model={other}", "--out", str(tmp_path / "s2"))
    )
    assert (
        f"the tokenizer of {other} (" in line and f"does not match the reference tokenizer of task '{name}' (" in line
    )
    assert f"from {other})" in line and f"from {tiny_lm})" in line  # both named
    assert nothing_stored(tmp_path / "s2")

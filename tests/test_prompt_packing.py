"""client.prompt_packing: all of an encounter's task prompts in one decoder pass, the shared note
once — the same letter logits, gradients and DP steps as one pass per task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.data import encode_site
from client.letter_scoring import suffix_ids
from client.memory_plan import tokens_per_example
from client.model import (
    LetterModel,
    build_model,
    load_tokenizer,
    load_trainable_state,
    trainable_state,
)
from client.privacy.dp_sgd import train_steps_private
from client.prompt_packing import pack_prompts
from client.train import joint_loss
from sites.tasks import TASKS
from tests.model_settings import model_settings, optimizer_settings
from tests.tiny_models import keyword_table, without_dropout

CPU = torch.device("cpu")
ALL_TASKS = ("readmission", "mortality", "los", "comorbidity", "denial")
MAX_LENGTH = 110  # the tiny vocabulary's questions take up to ~90 tokens: budgets of ~20-60


def prompts(*rows_per_task: list[list[int]], pad: int = 0):
    """(ids, mask) per task from lists of token ids per row, right-padded with `pad`."""
    out = []
    for rows in rows_per_task:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        out.append((ids, mask))
    return out


def test_a_row_is_the_shared_prefix_then_each_tasks_tail() -> None:
    # task 0 keeps one more note token (7) than task 1 before its question
    packed = pack_prompts(prompts([[1, 5, 6, 7, 20, 21]], [[1, 5, 6, 30, 31, 32, 33]]))
    assert packed.input_ids.tolist() == [[1, 5, 6, 7, 20, 21, 30, 31, 32, 33]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 3, 4, 5, 6]]
    assert packed.last.tolist() == [[5], [9]]
    allowed = packed.allowed[0, 0]
    # task 1's tail sees the prefix and its own earlier tokens, never task 0's tail
    assert allowed[7].tolist() == [True, True, True, False, False, False, True, True, False, False]
    # the prefix and task 0's tail are plain causal attention
    assert torch.equal(allowed[:6, :6], torch.ones(6, 6, dtype=torch.bool).tril())


def test_the_prefix_is_found_by_token_ids_not_assumed() -> None:
    # a tokenizer that ends a truncated note with a special token (9): the prompts part at it
    packed = pack_prompts(prompts([[1, 5, 6, 9, 20]], [[1, 5, 9, 30, 31]]))
    assert packed.input_ids.tolist() == [[1, 5, 6, 9, 20, 9, 30, 31]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3, 4]]
    # identical prompts still leave each task its last token to be scored from
    same = pack_prompts(prompts([[1, 5, 6]], [[1, 5, 6]]))
    assert same.input_ids.tolist() == [[1, 5, 6, 6]] and same.last.tolist() == [[2], [3]]


def test_groups_never_attend_to_each_other_and_pads_attend_to_themselves() -> None:
    packed = pack_prompts(
        prompts([[1, 5, 20], [1, 5, 6, 20]], [[1, 5, 30], [1, 5, 6, 30]],
                [[1, 8, 40], [1, 8, 40]], pad=3),
        groups=["admission", "admission", "discharge"])
    assert packed.input_ids.tolist() == [[1, 5, 20, 30, 1, 8, 40, 1],
                                         [1, 5, 6, 20, 30, 1, 8, 40]]
    assert packed.position_ids[0].tolist() == [0, 1, 2, 2, 0, 1, 2, 0]
    assert packed.last.tolist() == [[2, 3], [3, 4], [6, 7]]
    allowed = packed.allowed[:, 0]
    # the discharge group (row 0: tokens 4-6, row 1: 5-7) sees nothing of the admission one
    assert not allowed[0, 4:7, :4].any() and not allowed[1, 5:, :5].any()
    assert allowed[0, 7].tolist() == [False] * 7 + [True]  # a pad: itself only
    assert allowed.any(dim=-1).all()  # no query attends to nothing (NaN in the attention)


def test_prompts_that_do_not_line_up_are_refused() -> None:
    with pytest.raises(ValueError, match="no prompts to pack"):
        pack_prompts([])
    with pytest.raises(ValueError, match="the same rows"):
        pack_prompts(prompts([[1, 2]], [[1, 2], [1, 3]]))
    with pytest.raises(ValueError, match="the same rows.*one group each"):
        pack_prompts(prompts([[1, 2]], [[1, 3]]), groups=["admission"])
    with pytest.raises(ValueError, match="a prompt to pack is empty"):
        pack_prompts(prompts([[1, 2]], [[]]))


# ---------------------------------------------------------------------------------------------
# The letter model: one packed pass equals one pass per task


def long_note_table(rows: int):
    """Keyword notes long enough that each task's budget cuts the note at its own token."""
    table = keyword_table(rows)
    for column in ("admission_note", "discharge_note"):
        table[column] = (table[column] + " ") * 6
    return table


def letter_setup(base: Path, rows: int = 32):
    settings = model_settings(base=str(base), max_length=MAX_LENGTH, tasks=ALL_TASKS)
    splits = encode_site(long_note_table(rows), load_tokenizer(settings), ALL_TASKS,
                         max_length=MAX_LENGTH, scoring="letters")
    model = without_dropout(build_model(settings, device=CPU))
    rng = np.random.default_rng(0)  # an adapter that changes the logits (B starts at zero)
    load_trainable_state(model, {k: 0.5 * rng.normal(size=v.shape).astype(np.float32)
                                 for k, v in trainable_state(model).items()})
    return model, splits["train"]


def per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LetterModel, "packs_prompts", property(lambda self: False))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_letter_logits_equal_one_pass_per_task(letter_llama: Path, attention: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = letter_setup(letter_llama)
    model.backbone.get_base_model().config._attn_implementation = attention
    # every note is cut, and at a different token per task (their questions differ in length)
    assert all(set(data.prompts[t].lengths.tolist()) == {MAX_LENGTH} for t in ALL_TASKS)
    tokenizer = load_tokenizer(model_settings(base=str(letter_llama)))
    assert len({len(suffix_ids(tokenizer, t)) for t in ALL_TASKS}) > 1
    index = torch.arange(12)
    assert model.packs_prompts
    with torch.no_grad():
        packed = model.task_logits(data, index, ALL_TASKS)
        single = {t: model.task_logits(data, index, (t,))[t] for t in ALL_TASKS}
        per_task(monkeypatch)
        unpacked = model.task_logits(data, index, ALL_TASKS)
    for t in ALL_TASKS:
        torch.testing.assert_close(packed[t], single[t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed[t], unpacked[t], rtol=1e-5, atol=1e-5)


def test_packed_step_has_the_gradients_of_one_pass_per_task(
        letter_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grads = []
    for packs in (True, False):
        if not packs:
            per_task(monkeypatch)
        model, data = letter_setup(letter_llama)
        model.train()
        joint_loss(model, data, torch.arange(8), ALL_TASKS).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_packed_dp_step_is_the_per_task_dp_step(letter_llama: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """opacus's per-encounter gradients from one packed pass: clipped and summed as from five."""
    states = []
    for packs in (True, False):
        if not packs:
            per_task(monkeypatch)
        model, data = letter_setup(letter_llama)
        train_steps_private(model, data, steps=2, sample_rate=0.25, noise_multiplier=0.0,
                            max_grad_norm=0.1, optimizer=optimizer_settings(learning_rate=1e-2),
                            seed=0, noise_seed=1)
        states.append(trainable_state(model))
    moved = letter_setup(letter_llama)[0]
    assert any(not np.allclose(states[0][k], v) for k, v in trainable_state(moved).items())
    for k in states[0]:
        np.testing.assert_allclose(states[0][k], states[1][k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_the_memory_plan_counts_the_packed_width(letter_llama: Path) -> None:
    settings = model_settings(base=str(letter_llama), max_length=MAX_LENGTH, tasks=ALL_TASKS)
    _, data = letter_setup(letter_llama)
    packed = pack_prompts([data.prompts[t].batch(torch.arange(4), CPU) for t in ALL_TASKS],
                          [TASKS[t].note for t in ALL_TASKS])
    tokens, sequence, shape = tokens_per_example(settings)
    assert packed.input_ids.shape[1] == tokens == sequence < len(ALL_TASKS) * MAX_LENGTH
    assert shape == f"5 prompts of {MAX_LENGTH} tokens packed in {tokens}"

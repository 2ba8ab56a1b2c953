"""client.letter_scoring: Lang1's multiple-choice answer-letter scoring of a decoder, end to end.

The session's `tiny_llama` tokenizer was trained on lowercase clinical words only, so every capital
letter is `<unk>`: it is the base that letter scoring must refuse. `letter_llama` (tests/conftest.py)
is the same tiny Llama with the answer letters added to its vocabulary (as single words that absorb
the space before them, like Llama-2's `▁A`), so that `Answer: A` ends in one token per letter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.adapter_export import HEADS_FILE, save_adapter
from client.data import encode_site
from client.evaluate import evaluate_split, log_probs, predict
from client.letter_scoring import PROMPTS_FILE, LetterTokenError, letter_token_ids, prompt_suffix
from client.model import (
    LetterModel,
    ModelSettings,
    MultiTaskModel,
    base_scoring,
    build_model,
    load_tokenizer,
    load_trainable_state,
    trainable_state,
)
from client.privacy.dp_sgd import train_steps_private
from client.run_config import InvalidRunConfig
from client.settings import ClientSettings
from client.train import make_optimizer, train_steps
from sites.tasks import TASKS
from tests.model_settings import model_settings, optimizer_settings
from tests.run_config import default_run_config
from tests.tiny_models import keyword_table

CPU = torch.device("cpu")
TASK_MIX = ("mortality", "los", "comorbidity")  # 2, 4 and 5 classes
MAX_LENGTH = 128  # the tiny vocabulary spells the questions out in up to ~90 tokens
FAST = optimizer_settings(learning_rate=1e-2)


def letter_settings(base: Path, tasks: tuple[str, ...] = TASK_MIX, **kwargs) -> ModelSettings:
    return model_settings(base=str(base), max_length=MAX_LENGTH, tasks=tasks, **kwargs)


def setup(base: Path, tasks: tuple[str, ...] = TASK_MIX, *, rows: int = 64,
          device: torch.device = CPU, **kwargs):
    settings = letter_settings(base, tasks, **kwargs)
    splits = encode_site(keyword_table(rows), load_tokenizer(settings), tasks,
                         max_length=MAX_LENGTH, scoring="letters")
    return build_model(settings, device=device), splits


# ---------------------------------------------------------------------------------------------
# Which scoring a base gets


def test_scoring_values_are_validated() -> None:
    with pytest.raises(ValueError, match="`scoring` is 'lettres'; expected one of 'auto', 'head', "
                                         "'letters'"):
        model_settings(scoring="lettres")


def test_auto_is_heads_for_an_encoder_and_letters_for_a_decoder(tiny_encoder: Path,
                                                                letter_llama: Path) -> None:
    encoder = model_settings(base=str(tiny_encoder), max_length=32, tasks=("mortality",))
    decoder = letter_settings(letter_llama, ("mortality",))
    assert (encoder.scoring, base_scoring(encoder), base_scoring(decoder)) == (
        "auto", "head", "letters")
    assert isinstance(build_model(encoder, device=CPU), MultiTaskModel)
    assert isinstance(build_model(decoder, device=CPU), LetterModel)
    explicit = letter_settings(letter_llama, ("mortality",), scoring="head")
    assert isinstance(build_model(explicit, device=CPU), MultiTaskModel)


def test_letters_on_an_encoder_is_refused(tiny_encoder: Path) -> None:
    settings = model_settings(base=str(tiny_encoder), max_length=32, scoring="letters")
    with pytest.raises(ValueError, match=r"`scoring` is 'letters' but `base` '.*' is an encoder "
                                         r"\(model type 'bert'\).*expected 'head' or 'auto'"):
        build_model(settings, device=CPU)


def test_a_tokenizer_without_one_token_per_letter_is_refused(tiny_llama: Path) -> None:
    settings = letter_settings(tiny_llama)
    with pytest.raises(LetterTokenError, match=r"`base` '.*': its tokenizer .* writes answer "
                                               r"letter 'A' after 'Answer:' as tokens .*"
                                               r"expected `scoring` 'head' for this base"):
        build_model(settings, device=CPU)


def test_letter_ids_are_the_single_tokens_after_the_cue(letter_llama: Path) -> None:
    tokenizer = load_tokenizer(letter_settings(letter_llama))
    ids = letter_token_ids(tokenizer, "ABCDE", base=str(letter_llama))
    assert ids == tuple(tokenizer.convert_tokens_to_ids(list("ABCDE")))
    assert len(set(ids)) == 5


def test_run_config_key_scoring() -> None:
    assert ClientSettings.from_run_config(default_run_config()).model.scoring == "auto"
    parsed = ClientSettings.from_run_config(default_run_config(scoring="letters"))
    assert parsed.model.scoring == "letters"
    with pytest.raises(InvalidRunConfig, match="`scoring` is 'lettres'; expected one of auto, "
                                               "head, letters"):
        ClientSettings.from_run_config(default_run_config(scoring="lettres"))


# ---------------------------------------------------------------------------------------------
# Prompts


def test_prompts_are_a_note_prefix_then_the_question(letter_llama: Path) -> None:
    tokenizer = load_tokenizer(letter_settings(letter_llama))
    table = keyword_table(64)
    table.loc[0, "admission_note"] = " ".join(["fever"] * 400)  # far longer than max_length
    train = encode_site(table, tokenizer, TASK_MIX, max_length=MAX_LENGTH,
                        scoring="letters")["train"]
    assert train.notes == {} and set(train.prompts) == set(TASK_MIX)
    for task in TASK_MIX:
        suffix = tokenizer(prompt_suffix(task), add_special_tokens=False)["input_ids"]
        prompts = train.prompts[task]
        assert prompts.input_ids.shape[1] <= MAX_LENGTH and int(prompts.lengths[0]) == MAX_LENGTH
        for row in range(train.size):
            real = prompts.input_ids[row, : int(prompts.lengths[row])].tolist()
            assert real[0] == tokenizer.bos_token_id and real[-len(suffix):] == suffix
    assert "Answer:" in prompt_suffix("los") and "\nD. more than 5 days\n" in prompt_suffix("los")


def test_prompts_do_not_depend_on_the_label(letter_llama: Path) -> None:
    tokenizer = load_tokenizer(letter_settings(letter_llama))
    table = keyword_table(16)
    flipped = table.assign(mortality=1 - table["mortality"], los=(table["los"] + 1) % 4)
    a, b = (encode_site(t, tokenizer, TASK_MIX, max_length=MAX_LENGTH, scoring="letters")["train"]
            for t in (table, flipped))
    assert all(torch.equal(a.prompts[t].input_ids, b.prompts[t].input_ids) for t in TASK_MIX)


def test_subset_keeps_the_prompts(letter_llama: Path) -> None:
    _, splits = setup(letter_llama)
    part = splits["train"].subset([3, 1])
    assert part.size == 2 and set(part.prompts) == set(TASK_MIX)
    torch.testing.assert_close(part.prompts["los"].input_ids,
                               splits["train"].prompts["los"].input_ids[[3, 1]])


def test_too_short_max_length_for_the_question_is_named(letter_llama: Path) -> None:
    tokenizer = load_tokenizer(letter_settings(letter_llama))
    with pytest.raises(ValueError, match=r"`max-length` is 20 but task `mortality`'s question"):
        encode_site(keyword_table(8), tokenizer, ("mortality",), max_length=20,
                    scoring="letters")
    with pytest.raises(ValueError, match=r"`scoring` is 'auto'; expected 'head' or 'letters'"):
        encode_site(keyword_table(8), tokenizer, ("mortality",), max_length=64, scoring="auto")


# ---------------------------------------------------------------------------------------------
# Scores


def test_letter_probabilities_are_normalised_per_row(letter_llama: Path) -> None:
    model, splits = setup(letter_llama)
    probs = predict(model, splits["test"], TASK_MIX, batch_size=5)
    for task in TASK_MIX:
        assert probs[task].shape == (16, TASKS[task].num_classes)
        assert np.isfinite(probs[task]).all()
        np.testing.assert_allclose(probs[task].sum(axis=1), 1.0, rtol=1e-6)
    again = predict(model, splits["test"], TASK_MIX, batch_size=16)  # padding changes nothing
    for task in TASK_MIX:
        np.testing.assert_allclose(again[task], probs[task], rtol=1e-4, atol=1e-6)


def test_zero_shot_is_the_base_models_own_letter_distribution(letter_llama: Path) -> None:
    """Untrained (LoRA B = 0), the scores are the plain causal LM's next-token logits of the
    letters, normalised over the letters: a genuine zero-shot baseline, whatever the seed."""
    from transformers import AutoModelForCausalLM

    model, splits = setup(letter_llama, seed=3)
    test = splits["test"]
    logp = log_probs(model, test, TASK_MIX, batch_size=8)
    other, _ = setup(letter_llama, seed=4)
    np.testing.assert_allclose(log_probs(other, test, TASK_MIX, batch_size=8)["los"], logp["los"])
    plain = AutoModelForCausalLM.from_pretrained(letter_llama).eval()
    for task in TASK_MIX:
        letters = list(model.letter_ids[: TASKS[task].num_classes])
        for row in (0, 7):
            ids = test.prompts[task].input_ids[row, : int(test.prompts[task].lengths[row])]
            with torch.no_grad():
                logits = plain(input_ids=ids[None]).logits[0, -1, letters]
            expected = torch.log_softmax(logits, dim=-1).numpy()
            np.testing.assert_allclose(logp[task][row], expected, rtol=1e-4, atol=1e-5)


def test_finetuning_on_the_answer_letter_learns_a_keyword_task(letter_llama: Path) -> None:
    """mortality = 'sepsis' in the admission note: LoRA learns to answer B (Yes) when it is."""
    model, splits = setup(letter_llama, ("mortality",), rows=256)
    before = evaluate_split(model, splits["test"], ("mortality",), batch_size=64, seed=0,
                            n_resamples=10)
    train_steps(model, splits["train"], steps=60, batch_size=16, optimizer=FAST, seed=0)
    after = evaluate_split(model, splits["test"], ("mortality",), batch_size=64, seed=0,
                           n_resamples=10)
    # Three model seeds gave 0.99-1.0 here (zero-shot 0.53).
    assert after["mortality.auroc"] >= 0.9
    assert after["mortality.auroc"] > before["mortality.auroc"] + 0.1


def test_training_moves_the_adapter_and_nothing_else(letter_llama: Path) -> None:
    model, splits = setup(letter_llama)
    assert len(model.heads) == 0 and len(make_optimizer(model, FAST).param_groups) == 1
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = train_steps(model, splits["train"], steps=2, batch_size=8, optimizer=FAST, seed=0)
    assert result.steps == 2 and result.loss > 0
    moved = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    trainable = {k for k, v in model.named_parameters() if v.requires_grad}
    assert moved == trainable and all("lora_" in k for k in moved)


# ---------------------------------------------------------------------------------------------
# The federated state


def test_trainable_state_is_the_adapter_only_and_round_trips(letter_llama: Path) -> None:
    source = build_model(letter_settings(letter_llama, seed=1), device=CPU)
    state = trainable_state(source)
    assert state and all(k.startswith("adapter.") for k in state)
    assert len(state) == 2 * 2 * 2  # 2 layers x q/v_proj x A, B
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in state.items()}
    target = build_model(letter_settings(letter_llama, seed=2), device=CPU)
    load_trainable_state(target, state)
    loaded = trainable_state(target)
    assert all(np.array_equal(loaded[k], state[k]) for k in state)
    with pytest.raises(KeyError, match="unexpected key `head.mortality.bias`"):
        load_trainable_state(target, {**state, "head.mortality.bias": np.zeros(2, np.float32)})


def test_saved_adapter_loads_with_plain_peft(letter_llama: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, splits = setup(letter_llama)
    rng = np.random.default_rng(0)
    load_trainable_state(model, {k: rng.normal(size=v.shape).astype(np.float32)
                                 for k, v in trainable_state(model).items()})
    save_adapter(model, tmp_path / "final", settings=letter_settings(letter_llama))
    assert not (tmp_path / "final" / HEADS_FILE).exists()
    assert (tmp_path / "final" / PROMPTS_FILE).is_file()
    base = AutoModelForCausalLM.from_pretrained(letter_llama, local_files_only=True)
    plain = PeftModel.from_pretrained(base, tmp_path / "final").eval()
    prompts = splits["test"].prompts["los"]
    ids = prompts.input_ids[0, : int(prompts.lengths[0])][None]
    with torch.no_grad():
        expected = model.eval()(ids, torch.ones_like(ids))[0, :4]
        got = plain(input_ids=ids).logits[0, -1, list(model.letter_ids[:4])]
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------------------------------------
# DP-SGD


def _dp_round(model, train, **overrides):
    kwargs = dict(steps=1, sample_rate=0.25, noise_multiplier=1.0, max_grad_norm=1.0,
                  optimizer=FAST, seed=0, noise_seed=1)
    return train_steps_private(model, train, **{**kwargs, **overrides})


def test_one_dp_step_moves_every_adapter_tensor(letter_llama: Path) -> None:
    model, splits = setup(letter_llama)
    before = trainable_state(model)
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    _dp_round(model, splits["train"])
    after = trainable_state(model)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == hooks
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_dp_finetuning_on_the_answer_letter_learns_with_little_noise(letter_llama: Path,
                                                                     device: str) -> None:
    """The opacus #820 guard on the decoder the paper's way: at a high ε (σ = 0.1) DP-SGD must
    still learn the keyword task through the answer letter. Silently corrupted per-sample
    gradients would leave the adapter moving (the test above) and ε accounted, but nothing
    learned. #820 is a model moved to its device after peft wrapped it, hence the GPU run."""
    model, splits = setup(letter_llama, ("mortality",), rows=256, device=torch.device(device))
    before = evaluate_split(model, splits["test"], ("mortality",), batch_size=64, seed=0,
                            n_resamples=10)
    _dp_round(model, splits["train"], steps=60, sample_rate=16 / 192, noise_multiplier=0.1)
    after = evaluate_split(model, splits["test"], ("mortality",), batch_size=64, seed=0,
                           n_resamples=10)
    # Measured: 0.49 zero-shot, 0.90 after (non-DP: 0.99-1.0)
    assert after["mortality.auroc"] >= 0.8
    assert after["mortality.auroc"] > before["mortality.auroc"] + 0.1


def test_dp_hooks_and_functorch_agree_with_one_prompt_per_task(letter_llama: Path) -> None:
    """Three decoder passes per step (one per task prompt): per-sample gradients must add up."""
    states = []
    for mode in ("hooks", "functorch"):
        model, splits = setup(letter_llama)
        _dp_round(model, splits["train"], steps=2, grad_sample_mode=mode)
        states.append(trainable_state(model))
    for k in states[0]:
        np.testing.assert_allclose(states[0][k], states[1][k], atol=1e-5, err_msg=k)


def test_data_encoded_for_the_other_scoring_is_named(tiny_encoder: Path,
                                                     letter_llama: Path) -> None:
    letters, letter_splits = setup(letter_llama, ("mortality",), rows=16)
    heads = build_model(model_settings(base=str(tiny_encoder), max_length=32,
                                      tasks=("mortality",)), device=CPU)
    index = torch.arange(4)
    with pytest.raises(KeyError, match="no `admission` notes; expected data encoded with "
                                       "`scoring` 'head'"):
        heads.task_logits(letter_splits["train"], index, ("mortality",))
    head_splits = encode_site(keyword_table(16), load_tokenizer(letter_settings(letter_llama)),
                              ("mortality",), max_length=MAX_LENGTH)
    with pytest.raises(KeyError, match="no prompts for task `mortality`; expected data encoded "
                                       "with `scoring` 'letters'"):
        letters.task_logits(head_splits["train"], index, ("mortality",))

"""client.model: base resolution, devices, pooling, seeded init, the federated state, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.adapter_export import HEADS_FILE, save_adapter
from client.model import (
    ModelSettings,
    build_model,
    load_tokenizer,
    load_trainable_state,
    pool,
    pooling_for,
    select_device,
    trainable_state,
)
from tests.model_settings import lora_settings, model_settings
from tests.tiny_models import make_letter_llama

CPU = torch.device("cpu")
TASKS = ("mortality", "los")


def settings(base: Path, **kwargs) -> ModelSettings:
    """The head path on either base (a decoder would score answer letters under `auto`; that path
    is tests/test_letter_scoring.py's)."""
    return model_settings(**{"base": str(base), "max_length": 32, "tasks": TASKS,
                             "scoring": "head", **kwargs})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: model_settings(max_length=513), "`max_length` is 513; expected 1..512"),
        (lambda: model_settings(tasks=("mortality", "survival")), "unknown task 'survival'"),
        (lambda: lora_settings(r=0), "`lora.r` is 0; expected an integer >= 1"),
    ],
)
def test_settings_reject_bad_values(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_select_device() -> None:
    assert select_device("cpu") == CPU
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="`device` is 'gpu'; expected 'auto', 'cpu'"):
        select_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="`device` is 'cuda:0' but CUDA is not available"):
            select_device("cuda:0")


def test_pooling_follows_the_architecture() -> None:
    assert pooling_for("bert") == "mean"
    assert pooling_for("llama") == "last"


def test_last_token_pooling_reads_the_last_real_token_for_either_padding_side() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]


def test_decoder_pooled_vector_ignores_right_padding(tiny_llama: Path) -> None:
    model = build_model(settings(tiny_llama), device=CPU).eval()
    tokenizer = load_tokenizer(settings(tiny_llama))
    alone = tokenizer(["fever cough"], return_tensors="pt")
    batch = tokenizer(["fever cough", "chest pain with sepsis and fever"], padding=True,
                      return_tensors="pt")
    assert batch["attention_mask"][0, -1] == 0  # the short note really is padded
    with torch.no_grad():
        single = model.encode(alone["input_ids"], alone["attention_mask"])
        padded = model.encode(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(padded[0], single[0], rtol=1e-4, atol=1e-5)


def test_decoder_without_pad_token_falls_back_to_eos(tiny_llama_without_pad: Path) -> None:
    tokenizer = load_tokenizer(settings(tiny_llama_without_pad))
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert tokenizer.padding_side == "right"


def test_same_seed_same_initial_state_and_other_seed_differs(tiny_base: Path) -> None:
    first = trainable_state(build_model(settings(tiny_base, seed=7), device=CPU))
    again = trainable_state(build_model(settings(tiny_base, seed=7), device=CPU))
    other = trainable_state(build_model(settings(tiny_base, seed=8), device=CPU))
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["head.los.weight"], other["head.los.weight"])


def test_the_frozen_bases_dropout_is_off_and_loras_is_kept(tiny_base: Path) -> None:
    """A few dozen steps a round on a frozen base: its dropout only adds noise (and a fifth of a
    CPU step); LoRA's own dropout is what regularises the adapter."""
    model = build_model(settings(tiny_base, lora=lora_settings(dropout=0.05)), device=CPU)
    dropouts = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    lora = {name: p for name, p in dropouts.items() if "lora_dropout" in name}
    base = {name: p for name, p in dropouts.items() if "lora_dropout" not in name}
    assert lora and set(lora.values()) == {0.05}
    assert all(p == 0.0 for p in base.values()), base
    config = model.backbone.get_base_model().config
    assert all(getattr(config, f, 0.0) == 0.0 for f in
               ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout"))


@pytest.fixture(scope="module")
def letter_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer writes the answer letters as single tokens."""
    return make_letter_llama(tmp_path_factory.mktemp("letter-llama"))


def without_weights(base: Path, out: Path) -> Path:
    """A copy of the base folder with its config and tokenizer but no weight files."""
    out.mkdir()
    for item in base.iterdir():
        if item.is_file() and item.suffix not in (".safetensors", ".bin"):
            (out / item.name).write_bytes(item.read_bytes())
    return out


@pytest.mark.parametrize("scoring", ["head", "letters"])
def test_the_coordinator_builds_every_sites_initial_state_without_the_base_weights(
        tiny_base: Path, letter_base: Path, tmp_path: Path, scoring: str) -> None:
    """Lang1-7B's weights are never read by the coordinator: its model, built from the config
    alone, holds the same seeded adapter and heads as a site's, to the bit."""
    base = tiny_base if scoring == "head" else letter_base
    site = build_model(settings(base, scoring=scoring), device=CPU)
    empty = without_weights(base, tmp_path / "no-weights")
    coordinator = build_model(settings(empty, scoring=scoring), device=CPU, base_weights=False)
    ours, theirs = trainable_state(coordinator), trainable_state(site)
    assert ours.keys() == theirs.keys() and any(k.startswith("adapter.") for k in ours)
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(OSError):  # a site's model does need the weights
        build_model(settings(empty, scoring=scoring), device=CPU)


def test_trainable_state_holds_only_adapter_and_heads(tiny_base: Path) -> None:
    state = trainable_state(build_model(settings(tiny_base), device=CPU))
    adapter = [k for k in state if k.startswith("adapter.")]
    heads = sorted(k for k in state if k.startswith("head."))
    assert len(adapter) + len(heads) == len(state)
    assert all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert len(adapter) == 2 * 2 * 2  # 2 layers x default targets (query/value, q/v_proj) x A, B
    assert heads == ["head.los.bias", "head.los.weight", "head.mortality.bias",
                     "head.mortality.weight"]
    assert state["head.los.weight"].shape == (4, 32)
    assert all(v.dtype == np.float32 for v in state.values())


def test_trainable_state_round_trips_exactly(tiny_base: Path) -> None:
    source = build_model(settings(tiny_base, seed=1), device=CPU)
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=v.shape).astype(np.float32)
             for k, v in trainable_state(source).items()}
    target = build_model(settings(tiny_base, seed=2), device=CPU)
    load_trainable_state(target, state)
    loaded = trainable_state(target)
    assert all(np.array_equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda s: s.pop("head.los.bias"), KeyError, "lacks `head.los.bias`"),
        (lambda s: s.update({"head.denial.bias": np.zeros(2, np.float32)}), KeyError,
         "unexpected key `head.denial.bias`"),
        (lambda s: s.update({"head.los.weight": np.zeros((3, 32), np.float32)}), ValueError,
         r"`head.los.weight` has shape \(3, 32\); expected \(4, 32\)"),
    ],
)
def test_load_trainable_state_is_strict(tiny_encoder: Path, edit, error, match: str) -> None:
    model = build_model(settings(tiny_encoder), device=CPU)
    state = trainable_state(model)
    edit(state)
    with pytest.raises(error, match=match):
        load_trainable_state(model, state)


def test_saved_adapter_loads_with_plain_peft(tiny_base: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel

    model = build_model(settings(tiny_base), device=CPU)
    rng = np.random.default_rng(0)
    load_trainable_state(model, {k: rng.normal(size=v.shape).astype(np.float32)
                                 for k, v in trainable_state(model).items()})
    save_adapter(model, tmp_path / "final", settings=settings(tiny_base))
    base = AutoModel.from_pretrained(tiny_base, local_files_only=True)
    plain = PeftModel.from_pretrained(base, tmp_path / "final").eval()
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = model.eval().backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        got = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected)
    heads = load_file(str(tmp_path / "final" / HEADS_FILE))
    torch.testing.assert_close(heads["los.weight"], model.heads["los"].weight)


def test_the_export_names_its_base_portably_and_carries_a_model_card(
        tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The named base `all-MiniLM-L6-v2` (played here by the tiny encoder) is written as its
    name, not as the folder it was loaded from, and `lang1-fl score` still resolves it."""
    import json

    import client.model
    from client.base_model import MINILM
    from client.score import load_exported_model

    monkeypatch.setattr(client.model, "resolve_base_path",
                        lambda base: tiny_encoder if base == MINILM else Path(base))
    named = settings(MINILM)
    save_adapter(build_model(named, device=CPU), tmp_path / "final", settings=named)
    adapter_config = json.loads((tmp_path / "final" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == MINILM
    card = (tmp_path / "final" / "README.md").read_text()
    assert card.startswith(f"---\nlibrary_name: peft\nbase_model: {MINILM}\n")
    assert "[More Information Needed]" not in card and str(tiny_encoder) not in card
    assert "- Input: the first 32 tokens of the note." in card
    assert ("| mortality | in-hospital death (discharge disposition 'expired') | admission "
            "(`admission_note`) | no, yes | `mortality.p_no`, `mortality.p_yes` |") in card
    _, manifest = load_exported_model(tmp_path / "final", device=CPU)
    assert manifest.base == MINILM


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_starts_from_the_same_state_as_a_cpu_one(tiny_base: Path) -> None:
    on_cpu = trainable_state(build_model(settings(tiny_base), device=CPU))
    on_gpu = build_model(settings(tiny_base), device=torch.device("cuda"))
    assert all(p.device.type == "cuda" for p in on_gpu.parameters())
    state = trainable_state(on_gpu)
    assert all(np.array_equal(state[k], on_cpu[k]) for k in on_cpu)

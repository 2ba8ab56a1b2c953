"""client.frozen_layers and `lora-layers`: LoRA on the top layers only, the layers below kept per
note, and a model that trains, evaluates and trains under DP exactly as if they were recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.data import EncodedNotes, encode_site
from client.evaluate import log_probs
from client.frozen_layers import FrozenLayers, transformer_layers
from client.memory_plan import plan_memory
from client.model import build_model, load_tokenizer, trainable_state
from client.privacy.dp_sgd import train_steps_private
from client.run_config import InvalidRunConfig
from client.settings import ClientSettings
from client.train import joint_loss, train_steps
from tests.model_settings import lora_settings, model_settings, optimizer_settings
from tests.run_config import default_run_config
from tests.tiny_models import keyword_table

CPU = torch.device("cpu")
TASKS = ("mortality", "los", "readmission")
FAST = optimizer_settings(learning_rate=3e-3, head_learning_rate=3e-2)


def setup(base: Path, layers: int, *, rows: int = 48):
    settings = model_settings(base=str(base), max_length=24, tasks=TASKS, seed=0,
                              scoring="head", lora=lora_settings(layers=layers))
    splits = encode_site(keyword_table(rows), load_tokenizer(settings), TASKS, max_length=24)
    return build_model(settings, device=CPU), splits


def recomputed(model):
    """The same model with its frozen layers run every time (nothing kept)."""
    kept, model.frozen = model.frozen, None
    return kept


def test_lora_sits_on_the_top_layers_only(tiny_base: Path) -> None:
    model, _ = setup(tiny_base, layers=1)
    adapted = {int(k.split(".layers.")[-1].split(".")[0]) if ".layers." in k
               else int(k.split(".layer.")[-1].split(".")[0])
               for k in trainable_state(model) if k.startswith("adapter.")}
    assert adapted == {1}  # the second of the tiny bases' two layers
    assert model.frozen is not None and model.frozen.frozen == 1
    everything, _ = setup(tiny_base, layers=0)
    assert everything.frozen is None
    as_many, _ = setup(tiny_base, layers=2)  # as many as the base has: all, nothing kept
    assert as_many.frozen is None
    assert trainable_state(as_many).keys() == trainable_state(everything).keys()


def test_kept_states_give_the_logits_and_gradients_of_the_full_pass(tiny_base: Path) -> None:
    model, splits = setup(tiny_base, layers=1)
    train = splits["train"]
    train_steps(model, train, steps=3, batch_size=8, optimizer=FAST, seed=0)  # LoRA B non-zero
    index = torch.arange(12)
    model.eval()  # no LoRA dropout, so both passes see the same function

    def logits_and_grads():
        model.zero_grad(set_to_none=True)
        loss = joint_loss(model, train, index, TASKS)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return model.task_logits(train, index, TASKS), grads

    kept_logits, kept_grads = logits_and_grads()
    assert model.frozen.misses > 0
    frozen = recomputed(model)
    full_logits, full_grads = logits_and_grads()
    for task in TASKS:
        torch.testing.assert_close(kept_logits[task], full_logits[task])
    assert kept_grads.keys() == full_grads.keys() and len(kept_grads) > 0
    for name in kept_grads:
        torch.testing.assert_close(kept_grads[name], full_grads[name])
    assert frozen.hits > 0  # the second call of `logits_and_grads` read what the first kept


def test_training_and_evaluation_match_the_recomputed_model(tiny_encoder: Path) -> None:
    kept, splits = setup(tiny_encoder, layers=1)
    full, _ = setup(tiny_encoder, layers=1)
    recomputed(full)
    for model in (kept, full):
        train_steps(model, splits["train"], steps=4, batch_size=8, optimizer=FAST, seed=3)
    a, b = trainable_state(kept), trainable_state(full)
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    scores = [log_probs(m, splits["test"], TASKS, batch_size=5) for m in (kept, full)]
    for task in TASKS:
        np.testing.assert_allclose(scores[0][task], scores[1][task], atol=1e-5)


def test_a_dp_round_is_the_same_with_kept_states(tiny_encoder: Path) -> None:
    """opacus's per-encounter gradients come from hooks on the top layers' LoRA modules and the
    heads, which still run: the clipped, noised update is the one of the full pass."""
    states = []
    for keep in (True, False):
        model, splits = setup(tiny_encoder, layers=1)
        if not keep:
            recomputed(model)
        train_steps_private(model, splits["train"], steps=3, sample_rate=0.25,
                            noise_multiplier=1.0, max_grad_norm=1.0, optimizer=FAST, seed=0,
                            noise_seed=1)
        states.append(trainable_state(model))
    assert all(np.allclose(states[0][k], states[1][k], atol=1e-6) for k in states[0])
    moved = trainable_state(setup(tiny_encoder, layers=1)[0])
    assert any(not np.allclose(states[0][k], moved[k]) for k in moved if "lora_B" in k)


def test_a_note_is_kept_once_by_its_tokens(tiny_encoder: Path) -> None:
    model, splits = setup(tiny_encoder, layers=1)
    frozen = model.frozen
    notes = splits["train"].notes["discharge"]
    ids, mask = notes.batch(torch.arange(6), CPU)
    first = frozen.states(ids, mask)
    assert (frozen.misses, frozen.hits) == (6, 0)
    # the same notes padded wider, in another order: read back, zeros at the padding
    wider = EncodedNotes(torch.nn.functional.pad(ids, (0, 5)),
                         torch.nn.functional.pad(mask, (0, 5)))
    again = frozen.states(wider.input_ids.flip(0), wider.attention_mask.flip(0))
    assert (frozen.misses, frozen.hits) == (6, 6)
    torch.testing.assert_close(again.flip(0)[:, : ids.shape[1]], first)
    assert again[:, ids.shape[1]:].abs().sum() == 0
    padding = mask == 0
    assert first[padding].abs().sum() == 0


def test_the_kept_states_stay_within_their_bound(tiny_encoder: Path) -> None:
    model, splits = setup(tiny_encoder, layers=1)
    notes = splits["train"].notes["discharge"]
    ids, mask = notes.batch(torch.arange(20), CPU)
    one_note = int(mask[0].sum()) * 32 * 4  # tokens × hidden 32 × fp32
    frozen = FrozenLayers(model.backbone.get_base_model(), 1, capacity=3 * one_note)
    frozen.states(ids, mask)
    assert 0 < frozen.stored_bytes <= 3 * one_note
    assert len(frozen._entries) <= 3


def test_bad_frozen_layer_counts_are_refused(tiny_encoder: Path) -> None:
    model, _ = setup(tiny_encoder, layers=0)
    base = model.backbone.get_base_model()
    owner, name = transformer_layers(base)
    assert len(getattr(owner, name)) == 2
    with pytest.raises(ValueError, match="frozen layers 2; expected 1..1 of the base's 2"):
        FrozenLayers(base, 2)
    with pytest.raises(ValueError, match="the lowest 1 layers hold trainable weights"):
        FrozenLayers(base, 1)  # LoRA sits on every layer of this model
    with pytest.raises(ValueError, match="`lora-layers` is -1; expected 0"):
        lora_settings(layers=-1)


def test_the_run_config_sets_it_and_refuses_a_negative_count() -> None:
    config = default_run_config()
    assert ClientSettings.from_run_config(config).model.lora.layers == config["lora-layers"]
    with pytest.raises(InvalidRunConfig, match="`lora-layers`"):
        ClientSettings.from_run_config({**config, "lora-layers": -2})


def test_the_memory_plan_counts_trained_layers_and_what_is_kept(tiny_encoder: Path) -> None:
    def plan(layers: int):
        settings = model_settings(base=str(tiny_encoder), max_length=24, tasks=TASKS,
                                  scoring="head", lora=lora_settings(layers=layers))
        return plan_memory(settings, device=CPU, batch=4, private=False)

    top, everything = plan(1), plan(0)
    assert top.activations * 2 == everything.activations  # one layer of two keeps activations
    assert everything.kept == 0 and top.kept > 0
    assert top.total == top.weights + top.activations + top.optimizer + top.kept
    assert "kept frozen layers" in top.render("a") and "kept" not in everything.render("a")


def test_an_exported_top_layer_model_scores_as_it_was_trained(tiny_encoder: Path,
                                                              tmp_path: Path) -> None:
    import json

    from client.adapter_export import save_adapter
    from client.model_manifest import MANIFEST_FILE, read_manifest
    from client.score import load_exported_model

    model, splits = setup(tiny_encoder, layers=1)
    train_steps(model, splits["train"], steps=3, batch_size=8, optimizer=FAST, seed=0)
    save_adapter(model, tmp_path, settings=model_settings(
        base=str(tiny_encoder), max_length=24, tasks=TASKS, seed=0, scoring="head",
        lora=lora_settings(layers=1)))
    assert read_manifest(tmp_path).lora_layers == 1
    loaded, _ = load_exported_model(tmp_path, device=CPU, precision="fp32")  # as `model` is
    assert loaded.frozen is not None
    ours, theirs = (log_probs(m, splits["test"], TASKS, batch_size=8) for m in (model, loaded))
    for task in TASKS:
        np.testing.assert_allclose(ours[task], theirs[task], atol=1e-6)
    # A manifest written before `layers` existed adapted every layer.
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    del raw["lora"]["layers"]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw))
    assert read_manifest(tmp_path).lora_layers == 0


def all_notes(splits) -> list[EncodedNotes]:
    return [n for s in splits.values() for n in s.notes.values()]


def test_a_site_store_gives_a_fresh_process_every_note(tiny_encoder: Path, tmp_path: Path,
                                                       caplog) -> None:
    from client.frozen_store import SUFFIX, load_or_compute

    first, splits = setup(tiny_encoder, layers=1)
    notes = all_notes(splits)
    load_or_compute(first.frozen, notes, base=str(tiny_encoder), folder=tmp_path)
    stored = list(tmp_path.glob(f"*{SUFFIX}"))
    assert len(stored) == 1 and first.frozen.misses > 0
    # another process (a fresh model) reads them all and computes nothing, with the same result
    second, _ = setup(tiny_encoder, layers=1)
    load_or_compute(second.frozen, notes, base=str(tiny_encoder), folder=tmp_path)
    assert second.frozen.misses == 0
    assert second.frozen.stored_bytes == first.frozen.stored_bytes
    ids, mask = splits["test"].notes["discharge"].batch(torch.arange(5), CPU)
    torch.testing.assert_close(second.frozen.states(ids, mask), first.frozen.states(ids, mask))
    assert second.frozen.misses == 0
    log_probs(second, splits["test"], TASKS, batch_size=4)
    assert second.frozen.misses == 0  # scoring read every note, the layers' form included

    # other notes: another file; a damaged file: said, computed again and replaced
    fewer = [EncodedNotes(n.input_ids[:-1], n.attention_mask[:-1]) for n in notes]
    load_or_compute(setup(tiny_encoder, layers=1)[0].frozen, fewer, base=str(tiny_encoder),
                    folder=tmp_path)
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2
    stored[0].write_bytes(b"not a safetensors file")
    third, _ = setup(tiny_encoder, layers=1)
    load_or_compute(third.frozen, notes, base=str(tiny_encoder), folder=tmp_path)
    assert "cannot be used" in caplog.text and third.frozen.misses > 0
    assert stored[0].stat().st_size > 100


def test_a_site_runtime_fills_the_store_in_its_state_folder(tiny_encoder: Path,
                                                            tmp_path: Path) -> None:
    from client.site import site_runtime
    from client.state import SiteState
    from sites.config import load_consortium
    from tests.consortium_fixtures import write_table_consortium

    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(30))},
                                        tasks=("mortality",))
    site = load_consortium(consortium, data_root=tmp_path).sites[0]
    settings = model_settings(base=str(tiny_encoder), max_length=24, tasks=("mortality",),
                              seed=0, scoring="head", lora=lora_settings(layers=1))
    runtime = site_runtime(site, settings)
    folder = SiteState.open(site, runtime.fingerprint).frozen_layers_dir
    assert len(list(folder.iterdir())) == 1
    rows = sum(s.size for s in runtime.splits.values())
    assert len(runtime.model.frozen._entries) <= rows and runtime.model.frozen.misses > 0

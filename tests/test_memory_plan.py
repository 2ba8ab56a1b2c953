"""A site's memory plan: exact parameter counts, the parts it adds up, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client import memory_plan
from client.memory_plan import (
    GIB,
    MemoryPlan,
    MemoryPlanError,
    parameter_counts,
    plan_memory,
    tokens_per_example,
)
from client.model import build_model
from server.cli import main as lang1_fl
from tests.consortium_fixtures import write_table_consortium
from tests.model_settings import model_settings
from tests.tiny_models import keyword_table, make_letter_llama

CPU = torch.device("cpu")
TASKS = ("mortality", "los", "readmission")


@pytest.fixture(scope="module")
def letter_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_letter_llama(tmp_path_factory.mktemp("letter-llama"))


def _settings(base: Path, scoring: str, **fields):
    return model_settings(**{"base": str(base), "max_length": 32, "tasks": TASKS,
                             "scoring": scoring, **fields})


@pytest.mark.parametrize("scoring", ["head", "letters"])
def test_parameter_counts_are_those_of_the_model_a_site_builds(tiny_encoder, letter_base,
                                                               scoring):
    settings = _settings(tiny_encoder if scoring == "head" else letter_base, scoring)
    model = build_model(settings, device=CPU)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert parameter_counts(settings) == (frozen, trainable)


def test_the_plan_adds_weights_activations_optimizer_and_dp_per_example_gradients(letter_base):
    settings = _settings(letter_base, "letters")
    frozen, trainable = parameter_counts(settings)
    plain = plan_memory(settings, device=CPU, batch=4, private=False)
    private = plan_memory(settings, device=CPU, batch=4, private=True)
    assert plain.weights == 4 * (frozen + trainable)
    assert plain.optimizer == 3 * 4 * trainable  # gradients and AdamW's two moments, fp32
    assert plain.per_example == 0 and private.per_example == 4 * 4 * trainable
    assert private.total == plain.total + private.per_example
    # one packed pass: per note type, the note and each of its tasks' tails (client/prompt_packing)
    tokens, _, _ = tokens_per_example(settings)
    assert plain.shape == f"4 × 3 prompts of 32 tokens packed in {tokens}"
    doubled = plan_memory(settings, device=CPU, batch=8, private=False)
    assert doubled.activations == 2 * plain.activations
    half = plan_memory(settings, device=CPU, batch=4, private=False, activation_bytes=2)
    assert half.activations == plain.activations // 2


def test_heads_run_one_pass_per_note_type(tiny_encoder):
    plan = plan_memory(_settings(tiny_encoder, "head"), device=CPU, batch=4, private=False)
    assert plan.shape == "4 × 2 notes × 32 tokens"  # readmission reads the discharge note
    # two notes are two sequences of 32 tokens, not one of 64: twice one note's activations
    one = plan_memory(_settings(tiny_encoder, "head", tasks=("mortality",)), device=CPU, batch=4,
                      private=False)
    assert plan.activations == 2 * one.activations


def test_a_plan_over_the_free_memory_is_refused_with_what_helps():
    plan = MemoryPlan(device="cuda:0", weights=30 * GIB, activations=60 * GIB, optimizer=GIB,
                      per_example=0, available=80 * GIB, shape="16 × 5 prompts × 512 tokens")
    assert not plan.fits
    with pytest.raises(MemoryPlanError, match=r"site academic: one training step needs about "
                       r"91\.0 GiB on cuda:0 .* but 80\.0 GiB is free; expected at most 90% of "
                       r"it\. A smaller `training.max_physical_batch_size`"):
        plan.check("academic")
    assert MemoryPlan(device="cpu", weights=GIB, activations=GIB, optimizer=0, per_example=0,
                      available=None, shape="").fits  # unknown free memory: not refused


def test_run_refuses_a_step_the_sites_device_cannot_hold_before_flower(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr(memory_plan, "available_bytes", lambda device: 2**20)
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r")]
    assert lang1_fl(argv) == 2
    out, err = capsys.readouterr()
    assert "memory plan of site a on cpu (0.0 GiB free):" in out
    assert err.strip().startswith("lang1-fl: site a: one training step needs about")
    assert not (tmp_path / "r").exists()


def test_a_site_checks_its_plan_before_loading_the_base(tmp_path, monkeypatch, tiny_encoder):
    """What a hospital's own node does, deployed or simulated: refuse before the weights load."""
    from client import site as site_module
    from sites.config import load_consortium

    monkeypatch.setattr(memory_plan, "available_bytes", lambda device: 2**20)
    built = []
    monkeypatch.setattr(site_module, "build_model", lambda *a, **k: built.append(a))
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    site = load_consortium(consortium, data_root=tmp_path).sites[0]
    with pytest.raises(MemoryPlanError, match="site a: one training step needs about"):
        site_module.site_runtime(site, _settings(tiny_encoder, "head", tasks=("mortality",)))
    assert built == []

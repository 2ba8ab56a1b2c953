"""The exported adapter's model card, completed by the coordinator with the run's results."""

from __future__ import annotations

import pytest

from client.model_manifest import ModelManifest, write_manifest
from server.report.model_card import data_note, write_run_model_card
from tests.test_report import TASKS, _selected_metrics


@pytest.mark.parametrize(("flags", "note"), [
    ([True, True, True], "Trained and evaluated on synthetic data only: not for clinical use."),
    ([True, False, False], "Trained partly on synthetic data (sites a): not for clinical use."),
    ([False, False, False], None),
    ([None, None, None], None),  # a run recorded before sites said
])
def test_synthetic_data_is_named_on_the_card(flags, note):
    metrics = _selected_metrics()
    for site, flag in zip(metrics["sites"], flags):
        if flag is not None:
            site["synthetic"] = flag
    assert data_note(metrics) == note


def test_the_run_completes_the_card_with_its_round_and_aurocs(tmp_path):
    manifest = ModelManifest(base="all-MiniLM-L6-v2", max_length=256, scoring="head", tasks=TASKS,
                             lora_r=8, lora_alpha=16.0, lora_dropout=0.05,
                             lora_target_modules=None, seed=0)
    write_manifest(manifest, tmp_path)
    metrics = _selected_metrics()
    metrics["run"]["run_name"] = "r1"
    for site in metrics["sites"]:
        site["synthetic"] = True
    card = write_run_model_card(tmp_path, metrics).read_text()
    assert "base_model: all-MiniLM-L6-v2" in card
    assert "**Trained and evaluated on synthetic data only: not for clinical use.**" in card
    assert ("Round 1 of 2 of run `r1` (consortium `t`, strategy fedavg), chosen by highest mean "
            "validation AUROC.") in card
    assert "| mortality | 0.500 → 0.700 | 0.500 → 0.610 |" in card
    assert "- Input: the first 256 tokens of the note." in card

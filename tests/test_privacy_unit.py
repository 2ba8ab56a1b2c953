"""client.privacy.units and the patient ids of client.data: units, batches, pieces, regrouping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client.data import EncodedSplit, encode_site
from client.model import load_tokenizer
from client.privacy.noise import TorchNoise
from client.privacy.units import UnitIndex, poisson_units, sum_per_unit
from tests.model_settings import model_settings
from tests.tiny_models import keyword_table

TASKS = ("mortality",)


def _split(patients: list[int]) -> EncodedSplit:
    return EncodedSplit(notes={}, labels={}, oracle={}, size=len(patients),
                        patients=torch.tensor(patients))


def test_encode_site_numbers_patients_densely_per_split(tiny_encoder: Path) -> None:
    table = keyword_table(16)
    table["patient_id"] = ["x", "y", "x", "z", "y", "x", "w", "w", "v", "v", "u", "t",
                           "s", "s", "r", "s"]
    splits = encode_site(table, load_tokenizer(model_settings(base=str(tiny_encoder))), TASKS,
                         max_length=16)
    train, test = splits["train"], splits["test"]  # rows 0..11 and 12..15
    assert train.patients.tolist() == [0, 1, 0, 2, 1, 0, 3, 3, 4, 4, 5, 6]
    assert (train.patient_count, test.patient_count) == (7, 2)
    assert test.patients.tolist() == [0, 0, 1, 0]
    assert splits["validation"].patient_count == 0
    part = train.subset([3, 5, 0, 11])
    assert part.patients.tolist() == [0, 1, 1, 2] and part.patient_count == 3
    with pytest.raises(KeyError, match="lacks column `patient_id`"):
        encode_site(table.drop(columns="patient_id"),
                    load_tokenizer(model_settings(base=str(tiny_encoder))), TASKS, max_length=16)


def test_the_encounter_unit_is_each_row() -> None:
    units = UnitIndex.of(_split([0, 0, 1]), "encounter")
    assert units.count == 3
    assert units.rows(torch.tensor([0, 2])).tolist() == [0, 2]
    assert [p.tolist() for p in units.pieces(torch.arange(3), 2)] == [[0, 1], [2]]


def test_a_patients_rows_come_together() -> None:
    units = UnitIndex.of(_split([0, 1, 0, 2, 1, 0, 3]), "patient")
    assert units.count == 4
    assert units.sizes(torch.arange(4)).tolist() == [3, 2, 1, 1]
    assert units.rows(torch.tensor([1, 0])).tolist() == [1, 4, 0, 2, 5]
    assert units.rows(torch.tensor([], dtype=torch.long)).tolist() == []


def test_pieces_never_cut_a_patient() -> None:
    units = UnitIndex.of(_split([0, 1, 0, 2, 1, 0, 3]), "patient")
    everyone = torch.arange(4)
    assert [p.tolist() for p in units.pieces(everyone, 0)] == [[0, 2, 5, 1, 4, 3, 6]]
    assert [p.tolist() for p in units.pieces(everyone, 7)] == [[0, 2, 5, 1, 4, 3, 6]]
    # patient 0 has 3 encounters: a piece of its own when pieces hold 2
    assert [p.tolist() for p in units.pieces(everyone, 2)] == [[0, 2, 5], [1, 4], [3, 6]]
    assert [p.tolist() for p in units.pieces(everyone, 4)] == [[0, 2, 5], [1, 4, 3, 6]]
    with pytest.raises(ValueError, match="`max_physical_batch_size` is -1"):
        units.pieces(everyone, -1)


def test_units_need_patient_ids_and_a_known_name() -> None:
    with pytest.raises(ValueError, match="`privacy_unit` is 'patient' but the split has no"):
        UnitIndex.of(EncodedSplit(notes={}, labels={}, oracle={}, size=2), "patient")
    with pytest.raises(ValueError, match="`privacy_unit` is 'visit'; expected one of"):
        UnitIndex.of(_split([0]), "visit")


def test_poisson_units_draws_one_batch_per_step() -> None:
    batches = list(poisson_units(TorchNoise(seed=0), 50, 0.2, 7))
    again = list(poisson_units(TorchNoise(seed=0), 50, 0.2, 7))
    assert len(batches) == 7 and all(torch.equal(a, b) for a, b in zip(batches, again))
    assert all(int(b.max()) < 50 for b in batches if len(b))


def test_sum_per_unit_sums_each_patients_rows_in_every_tensor() -> None:
    weight, bias = torch.zeros(2, 3), torch.zeros(2)
    weight.grad_sample = torch.arange(5 * 6, dtype=torch.float32).view(5, 2, 3)
    bias.grad_sample = torch.ones(5, 2)
    rows_units = torch.tensor([7, 7, 2, 2, 2])  # grouped, as UnitIndex.rows gives them
    per_row = weight.grad_sample.clone()
    sum_per_unit([weight, bias], rows_units)
    assert weight.grad_sample.shape == (2, 2, 3)
    torch.testing.assert_close(weight.grad_sample[0], per_row[:2].sum(0))
    torch.testing.assert_close(weight.grad_sample[1], per_row[2:].sum(0))
    assert bias.grad_sample.tolist() == [[2.0, 2.0], [3.0, 3.0]]
    with pytest.raises(RuntimeError, match="expected one tensor of 5 rows"):
        sum_per_unit([bias], rows_units)  # already regrouped: 2 rows

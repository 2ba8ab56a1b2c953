"""Seeded train/validation/test splits by patient.

Splitting by encounter would put a patient's earlier stay in training and a later one in test, and a
model could then recognise the patient instead of the risk; every encounter of a patient therefore
lands in the same split. The assignment depends only on the seed and the set of patient ids, not on
row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sites.tasks import SPLITS


@dataclass(frozen=True)
class SplitFractions:
    """Share of patients in each split; the three shares sum to 1."""

    train: float = 0.7
    validation: float = 0.1
    test: float = 0.2

    def __post_init__(self) -> None:
        shares = (self.train, self.validation, self.test)
        if any(share < 0 for share in shares) or abs(sum(shares) - 1.0) > 1e-9:
            raise ValueError(
                f"split fractions `train`, `validation`, `test` are {shares}; expected shares "
                ">= 0 that sum to 1")


def split_by_patient(
    patient_ids: Sequence[str] | np.ndarray, *, seed: int,
    fractions: SplitFractions = SplitFractions(),
) -> np.ndarray:
    """The split name of each row (an array aligned with `patient_ids`); no patient in two splits.

    Patients are shuffled with `seed` and cut by the fractions (counts rounded, the test split takes
    the remainder), so the split shares hold for patients, and approximately for encounters.
    """
    ids = np.asarray(patient_ids).astype(str)
    patients = np.unique(ids)  # sorted: independent of row order
    order = np.random.default_rng(seed).permutation(len(patients))
    n_train = int(round(fractions.train * len(patients)))
    n_validation = int(round(fractions.validation * len(patients)))
    assigned = np.empty(len(patients), dtype=object)
    assigned[order[:n_train]] = SPLITS[0]
    assigned[order[n_train:n_train + n_validation]] = SPLITS[1]
    assigned[order[n_train + n_validation:]] = SPLITS[2]
    return assigned[np.searchsorted(patients, ids)].astype(str)

"""The privacy unit of DP-SGD at a site: one encounter, or one patient with all their encounters.

With the encounter as unit, each row of the table is sampled, clipped and counted on its own, and
(ε, δ) bound what the update reveals about one encounter. A patient with k encounters is then
protected only at group level (roughly kε). With the patient as unit:

1. Poisson sampling picks PATIENTS, each independently with probability q (`poisson_units`).
2. The batch is all training encounters of the picked patients, grouped patient by patient
   (`UnitIndex.rows`); physical pieces never cut a patient (`UnitIndex.pieces`).
3. opacus computes per-encounter gradients as usual; before the optimizer clips them, the
   per-sample gradients of each patient's encounters are summed (`sum_per_unit`, every trainable
   tensor alike), so one patient is one per-sample gradient, which opacus clips to C.
4. Noise σC and the division by the expected batch size q × patients are opacus's.

Each patient's whole contribution to a step is then at most C, so the accountant run with sample
rate q over patients gives patient-level (ε, δ). For the encounter unit nothing is regrouped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from client.data import EncodedSplit
from client.privacy.noise import NoiseSource

PrivacyUnit = Literal["encounter", "patient"]
PRIVACY_UNITS: tuple[str, ...] = ("encounter", "patient")


@dataclass(frozen=True)
class UnitIndex:
    """The rows of a split grouped by privacy unit."""

    unit_of_row: torch.Tensor
    """Dense unit id of each row, LongTensor [N]."""
    order: torch.Tensor
    """Rows sorted by unit (stable), LongTensor [N]."""
    starts: torch.Tensor
    """Unit u's rows are `order[starts[u]:starts[u + 1]]`, LongTensor [units + 1]."""

    @classmethod
    def of(cls, data: EncodedSplit, unit: PrivacyUnit) -> UnitIndex:
        if unit not in PRIVACY_UNITS:
            raise ValueError(f"`privacy_unit` is {unit!r}; expected one of {list(PRIVACY_UNITS)}")
        if unit == "encounter":
            rows = torch.arange(data.size)
            return cls(rows, rows, torch.arange(data.size + 1))
        if data.patients is None:
            raise ValueError("`privacy_unit` is 'patient' but the split has no patient ids; "
                             "expected an EncodedSplit from `encode_site` on a table with "
                             "`patient_id`")
        counts = torch.bincount(data.patients, minlength=data.patient_count)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        return cls(data.patients, torch.argsort(data.patients, stable=True), starts)

    @property
    def count(self) -> int:
        """Number of units (encounters or patients)."""
        return len(self.starts) - 1

    def sizes(self, units: torch.Tensor) -> torch.Tensor:
        """Rows per unit in `units`."""
        return self.starts[units + 1] - self.starts[units]

    def rows(self, units: torch.Tensor) -> torch.Tensor:
        """All rows of `units`, unit by unit (LongTensor)."""
        sizes = self.sizes(units)
        first = torch.repeat_interleave(self.starts[units], sizes)  # each row's unit's start
        within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(sizes.cumsum(0) - sizes,
                                                                          sizes)
        return self.order[first + within]

    def pieces(self, units: torch.Tensor, max_rows: int) -> tuple[torch.Tensor, ...]:
        """The rows of `units` in pieces of at most `max_rows` rows (0 = one piece), never cutting
        a unit: a unit with more rows than that is a piece of its own."""
        if max_rows < 0:
            raise ValueError(f"`max_physical_batch_size` is {max_rows}; expected >= 1, or 0 for "
                             "the whole batch at once")
        sizes = self.sizes(units).tolist()
        if max_rows == 0 or sum(sizes) <= max_rows:
            return (self.rows(units),)
        pieces, current, filled = [], [], 0
        for unit, size in zip(units.tolist(), sizes):
            if current and filled + size > max_rows:
                pieces.append(current)
                current, filled = [], 0
            current.append(unit)
            filled += size
        pieces.append(current)
        return tuple(self.rows(torch.tensor(piece, dtype=torch.long)) for piece in pieces)


def poisson_units(source: NoiseSource, units: int, sample_rate: float, steps: int
                  ) -> Iterator[torch.Tensor]:
    """`steps` Poisson batches of unit ids (each unit in with probability `sample_rate`), drawn
    from `source`: what the accountant assumes."""
    for _ in range(steps):
        yield source.poisson(units, sample_rate)


def sum_per_unit(params: Iterable[torch.Tensor], unit_of_row: torch.Tensor) -> None:
    """Replace each parameter's per-encounter `grad_sample` [rows, ...] of one physical piece by
    per-unit sums [units, ...], units numbered in order of appearance in `unit_of_row` (the piece's
    rows' unit ids, grouped). opacus (loss_reduction 'mean') has already multiplied by the rows of
    the piece, so row i holds the gradient of its own loss and a sum is the gradient of the sum of
    a patient's encounters' losses."""
    _, group = torch.unique_consecutive(unit_of_row, return_inverse=True)
    groups = int(group.max()) + 1 if len(group) else 0
    for p in params:
        per_row = getattr(p, "grad_sample", None)
        if not isinstance(per_row, torch.Tensor) or per_row.shape[0] != len(unit_of_row):
            shape = per_row.shape if isinstance(per_row, torch.Tensor) else type(per_row).__name__
            raise RuntimeError(f"a trainable parameter of shape {tuple(p.shape)} has grad_sample "
                               f"{shape}; expected one tensor of {len(unit_of_row)} rows (one "
                               "backward pass per physical piece)")
        summed = torch.zeros((groups, *per_row.shape[1:]), device=per_row.device,
                             dtype=per_row.dtype)
        p.grad_sample = summed.index_add_(0, group.to(per_row.device), per_row)

"""A site's own record of how each global adapter scored its test split, so that the reported
round's bootstrap intervals cost a bootstrap and not a second pass of the model.

The rounds' evaluations skip the bootstrap (nothing reports their intervals); once the server has
chosen a round on validation it asks for that round's intervals, with that round's adapter. The
site then reads back the class probabilities it computed for exactly that adapter (keyed by the
digest of the tensors it was sent, never by anything else the server says) and bootstraps them.

Per-example values: they stay in the site's state folder (`SiteState.run_dir(run)`), like its
stored replies and tokenized notes, and never go into a message.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sites.files import write_atomic


class TestScores:
    """Log class probabilities [N, K] per task of one run's test split, one file per adapter."""

    __test__ = False  # not a pytest class, despite its name

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, adapter_digest: str) -> Path:
        return self.directory / f"{adapter_digest}.npz"

    def save(self, adapter_digest: str, logp: dict[str, np.ndarray]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **logp)
        write_atomic(self._path(adapter_digest), buffer.getvalue())

    def load(self, adapter_digest: str, tasks: Sequence[str], rows: int
             ) -> dict[str, np.ndarray] | None:
        """The scores kept for this adapter, or None when there are none for these tasks and
        this many test rows (another `max_examples`, another task list: scored afresh)."""
        path = self._path(adapter_digest)
        if not path.is_file():
            return None
        with np.load(path) as kept:
            if set(kept.files) != set(tasks) or any(kept[t].shape[0] != rows for t in tasks):
                return None
            return {task: kept[task] for task in tasks}

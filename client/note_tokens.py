"""Note lengths in the run's tokens, for `lang1-fl sites check`'s summary.

A task reads the first `max-length` tokens of its note, so what a coordinator needs to know of a
site's notes is how long they are in the base model's tokens and how many are cut. Counting needs
the run's tokenizer (loaded offline, like the client does), which is why this lives in client/ and
reaches `sites check` as a table report (server/cli.py passes it to sites/cli.py). Percentiles and
a share only: no note, no token id, no single note's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sites.config import SiteConfig

if TYPE_CHECKING:
    import pandas as pd


def note_token_summary(site: SiteConfig, table: pd.DataFrame,
                       overrides: Sequence[str] | None = None, profile: str | None = None) -> str:
    """Token-length percentiles of each note column the site's tasks read, and the share of notes
    longer than `max-length` tokens, with the run config's base model and max-length (pyproject's
    defaults, changed by the run profile `profile` and by `overrides`: `--profile NAME` and
    `--set KEY=VALUE` items as `lang1-fl run` takes them)."""
    import numpy as np

    from client.model import load_tokenizer
    from client.run_config import planned_run_config
    from client.run_profiles import profile_overrides
    from client.settings import ClientSettings
    from sites.site_summary import note_columns, percentiles

    config = planned_run_config(list(overrides or []), rounds=None,
                                profile=profile_overrides(profile))
    model = ClientSettings.from_run_config(config).model
    tokenizer = load_tokenizer(model)
    lines = []
    for column, notes in note_columns(table, site.tasks).items():
        ids = tokenizer(table[column].astype(str).tolist(), truncation=False,
                        verbose=False)["input_ids"]
        lengths = np.array([len(row) for row in ids])
        cut = float(np.mean(lengths > model.max_length))
        lines.append(f"{notes} note tokens ({model.base}): {percentiles(lengths)}; {cut:.1%} "
                     f"of notes cut at max-length {model.max_length}")
    return "\n".join(lines)

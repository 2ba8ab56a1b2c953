"""Small synthetic consortia written in tests: the shipped profiles, fewer encounters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from sites.tasks import TASK_NAMES

if TYPE_CHECKING:
    import pandas as pd


def write_small_consortium(
    directory: Path,
    *,
    encounters: int = 300,
    local_steps: int = 10,
    profiles: tuple[tuple[str, str], ...] = (
        ("academic", "train"),
        ("community", "train"),
        ("external_system", "external"),
    ),
    tasks: tuple[str, ...] = TASK_NAMES,
    privacy: dict | None = None,
) -> Path:
    """A consortium YAML of synthetic sites (one per profile) in `directory`; returns its path.
    `privacy`, when given, is the `privacy` block of every training site. Each site keeps its
    state in `directory/state/<site>`, so every test starts with fresh ledgers."""
    sites = [
        {
            "name": profile.replace("_", "-"),
            "role": role,
            "data": {"path": f"{profile}/encounters.parquet", "format": "parquet"},
            "tasks": list(tasks),
            "training": {"batch_size": 16, "local_steps": local_steps},
            "evaluation": {"batch_size": 64, "max_examples": 0},
            "device": "cpu",
            "synthetic": {"profile": profile, "encounters": encounters},
            **({"privacy": privacy} if privacy and role == "train" else {}),
            "state_dir": f"state/{profile.replace('_', '-')}",
        }
        for profile, role in profiles
    ]
    path = Path(directory) / "consortium.yaml"
    path.write_text(yaml.safe_dump({"name": "small", "seed": 7, "sites": sites}, sort_keys=False))
    return path


def write_table_consortium(
    directory: Path, tables: dict[str, tuple[str, pd.DataFrame]], *, tasks: tuple[str, ...],
    local_steps: int = 10, privacy: dict | None = None, batch_size: int = 16,
) -> Path:
    """A consortium of sites whose tables are given (the real-data path: no `synthetic` block);
    `tables` maps site name -> (role, encounter table); `privacy` is every training site's
    `privacy` block when given."""
    from sites.config import DataSource
    from sites.dataset import write_site_table

    directory = Path(directory)
    sites = []
    for name, (role, table) in tables.items():
        path = directory / name / "encounters.parquet"
        write_site_table(table, DataSource(path=path, format="parquet"))
        sites.append(
            {
                "name": name,
                "role": role,
                "data": {"path": str(path), "format": "parquet"},
                "tasks": list(tasks),
                "training": {"batch_size": batch_size, "local_steps": local_steps},
                "device": "cpu",
                **({"privacy": privacy} if privacy and role == "train" else {}),
                "state_dir": f"state/{name}",
            }
        )
    path = directory / "consortium.yaml"
    path.write_text(yaml.safe_dump({"name": "tables", "seed": 7, "sites": sites}, sort_keys=False))
    return path

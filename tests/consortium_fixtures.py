"""Small synthetic consortia written in tests: the shipped profiles, fewer encounters."""

from __future__ import annotations

from pathlib import Path

import yaml

from sites.tasks import TASK_NAMES


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
) -> Path:
    """A consortium YAML of synthetic sites (one per profile) in `directory`; returns its path."""
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
        }
        for profile, role in profiles
    ]
    path = Path(directory) / "consortium.yaml"
    path.write_text(yaml.safe_dump({"name": "small", "seed": 7, "sites": sites}, sort_keys=False))
    return path

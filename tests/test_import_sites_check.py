"""A MIMIC-IV and a MEDS site end to end through the site YAML: `lang1-fl sites check` reads them
with the real importers (not fakes) and prints the same summary as for a synthetic site."""

from __future__ import annotations

from pathlib import Path

import yaml

from server.cli import main as lang1_fl
from sites.config import load_site
from sites.dataset import read_site_table
from tests.meds_fixture import OPTIONS as MEDS_OPTIONS
from tests.meds_fixture import write_meds
from tests.mimic_fixture import write_mimic

TASKS = ["readmission", "mortality", "los", "comorbidity"]


def _site(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"name": "real", "role": "external", "data": data,
                                    "tasks": TASKS}, sort_keys=False))
    return path


def test_a_mimic_site_is_checked_with_the_real_importer(tmp_path, capsys):
    root = write_mimic(tmp_path / "mimic-iv", suffix=".csv.gz")
    site = _site(tmp_path, {"path": str(root), "format": "mimic-iv",
                            "split": {"by": "patient", "seed": 3}})
    table = read_site_table(load_site(site))
    assert len(table) > 0 and set(table["split"]) <= {"train", "validation", "test"}
    assert "denial" not in table.columns
    assert not any(table.groupby("patient_id")["split"].nunique() > 1)  # no patient in two splits
    assert lang1_fl(["sites", "check", str(site)]) == 0
    out = capsys.readouterr().out
    assert "mimic-iv" in out.lower() and f"{len(table)}" in out
    assert all(task in out for task in TASKS)


def test_a_meds_site_is_checked_with_the_real_importer(tmp_path, capsys):
    root = write_meds(tmp_path / "meds")
    site = _site(tmp_path, {"path": str(root), "format": "meds", "options": MEDS_OPTIONS})
    table = read_site_table(load_site(site))
    assert set(table["split"]) <= {"train", "validation", "test"} and len(table) > 0
    assert lang1_fl(["sites", "check", str(site)]) == 0
    assert "meds" in capsys.readouterr().out.lower()

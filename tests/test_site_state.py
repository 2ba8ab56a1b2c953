"""A site's own state folder: keyed by the site and its data, never shared, never by location."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import yaml

from client.state import SiteState, StateFolderClaimed, dataset_key
from sites.config import DataSource, InvalidSiteConfig, load_consortium
from sites.dataset import dataset_fingerprint, read_site_table, table_fingerprint, write_site_table
from sites.state_folder import STATE_HOME_ENV
from tests.consortium_fixtures import write_small_consortium


def _two_sites_in_one_folder(tmp_path, *, state_dirs=(None, None)):
    """Two hospitals whose tables sit side by side in one data folder."""
    consortium = write_small_consortium(tmp_path, encounters=60)
    raw = yaml.safe_load(consortium.read_text())
    for site, folder in zip(raw["sites"][:2], state_dirs):
        site["data"]["path"] = f"shared/{site['name']}.parquet"
        site.pop("state_dir")
        if folder is not None:
            site["state_dir"] = folder
    consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    return consortium


def test_by_default_a_site_keeps_its_state_in_a_folder_named_after_it(tmp_path):
    config = load_consortium(_two_sites_in_one_folder(tmp_path), data_root=tmp_path / "data")
    academic, community = config.sites[:2]
    assert academic.data.path.parent == community.data.path.parent  # one data folder
    home = os.environ[STATE_HOME_ENV]
    assert str(academic.state_dir) == f"{home}/sites/academic"
    assert str(community.state_dir) == f"{home}/sites/community"


def test_two_sites_configured_onto_one_state_folder_are_refused_at_load(tmp_path):
    consortium = _two_sites_in_one_folder(tmp_path, state_dirs=("state/x", "state/x"))
    with pytest.raises(InvalidSiteConfig, match=r"`sites\[1\].state_dir` of site 'community' is "
                       r".*state/x, the state folder of site 'academic'; expected a folder of "
                       "its own"):
        load_consortium(consortium)


def test_a_state_folder_claimed_by_one_site_is_refused_to_another(tmp_path):
    config = load_consortium(write_small_consortium(tmp_path, encounters=60),
                             data_root=tmp_path / "data")
    academic, community = config.sites[:2]
    fingerprint = "sha256:" + "ab" * 32
    peeked = SiteState.peek(academic, fingerprint)  # read-only: claims nothing
    assert not academic.state_dir.exists()
    state = SiteState.open(academic, fingerprint)
    assert state == peeked and state.dataset == "abababababababab"
    assert state.ledger == academic.state_dir / "abababababababab" / "privacy-ledger.jsonl"
    imposter = community.__class__(**{**community.__dict__, "state_dir": academic.state_dir})
    with pytest.raises(StateFolderClaimed, match="belongs to site 'academic'.*site 'community' "
                       "needs a folder of its own: set `state_dir`"):
        SiteState.open(imposter, fingerprint)
    with pytest.raises(StateFolderClaimed):
        SiteState.peek(imposter, fingerprint)


def test_the_dataset_fingerprint_follows_the_patients_not_the_file(tmp_path):
    config = load_consortium(write_small_consortium(tmp_path, encounters=80),
                             data_root=tmp_path / "data")
    from client.site import ensure_site_data

    site = config.sites[0]
    ensure_site_data(site, seed=config.seed)
    table = read_site_table(site)
    fingerprint = dataset_fingerprint(site)
    assert fingerprint == table_fingerprint(table) and fingerprint.startswith("sha256:")
    assert len(dataset_key(fingerprint)) == 16
    # Re-exported as CSV, rows shuffled and re-split: the same patients, the same budget.
    moved = table.sample(frac=1.0, random_state=3).assign(
        split=lambda t: t["split"].map({"train": "validation", "validation": "train",
                                        "test": "test"}))
    csv = DataSource(path=tmp_path / "elsewhere" / "table.csv", format="csv")
    write_site_table(moved, csv)
    exported = site.__class__(**{**site.__dict__, "data": csv, "synthetic": None})
    assert dataset_fingerprint(exported) == fingerprint
    # One encounter more: another dataset.
    grown = pd.concat([table, table.iloc[[0]].assign(encounter_id="new-encounter")])
    assert table_fingerprint(grown) != fingerprint
    with pytest.raises(ValueError, match="expected 'sha256:<hex>'"):
        dataset_key("md5:1234")

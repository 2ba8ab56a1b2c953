"""The pooled site: training sites' train/validation rows only, each with its own split."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sites.config import InvalidSiteConfig, load_consortium
from sites.dataset import read_site_table, write_site_table
from sites.pooling import POOLED_SITE, pooled_site, with_pooled_site, write_pooled_table
from sites.synthetic import generate_site
from tests.consortium_fixtures import write_small_consortium


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    root = tmp_path_factory.mktemp("pooling")
    path = write_small_consortium(root, encounters=120, local_steps=3)
    consortium = load_consortium(path, data_root=root / "data")
    for site in consortium.sites:
        write_site_table(generate_site(site.synthetic, site_name=site.name, seed=consortium.seed),
                         site.data)
    return consortium, root / "data"


def test_pooled_table_holds_no_test_row_and_nothing_of_the_external_system(consortium):
    consortium, data_dir = consortium
    site = write_pooled_table(consortium, data_dir=data_dir)
    pooled = read_site_table(site)
    expected = []
    for member in consortium.training_sites:
        table = read_site_table(member)
        kept = table[table["split"] != "test"]
        expected += [(f"{member.name}/{e}", s) for e, s in zip(kept["encounter_id"], kept["split"])]
    assert sorted(zip(pooled["encounter_id"], pooled["split"])) == sorted(expected)
    assert set(pooled["split"]) == {"train", "validation"}
    external = {e.name for e in consortium.external_sites}
    assert not any(e.split("/")[0] in external for e in pooled["encounter_id"])


def test_pooled_site_trains_as_many_steps_as_the_federation(consortium):
    consortium, data_dir = consortium
    site = pooled_site(consortium, data_dir=data_dir)
    assert site.name == POOLED_SITE and site.role == "train" and site.privacy is None
    assert site.training.local_steps == 3 * len(consortium.training_sites)
    assert site.data.path == data_dir / f"{consortium.name}-pooled" / "encounters.parquet"
    extended = with_pooled_site(consortium, data_dir=data_dir)
    assert [s.name for s in extended.sites] == [s.name for s in consortium.sites] + [POOLED_SITE]


def test_a_site_named_pooled_is_refused(consortium):
    consortium, data_dir = consortium
    clash = replace(consortium, sites=(replace(consortium.sites[0], name=POOLED_SITE),)
                    + consortium.sites[1:])
    with pytest.raises(InvalidSiteConfig, match="rename that site"):
        pooled_site(clash, data_dir=data_dir)

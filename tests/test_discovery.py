"""Site discovery: nodes say which site they are; anything that does not match the consortium stops
the run before a tensor is sent."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from server.discovery import SiteDiscoveryError, discover_sites
from sites.config import load_consortium
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity


@pytest.fixture()
def consortium(tmp_path):
    set_task_identity()
    return load_consortium(write_small_consortium(tmp_path), data_root=tmp_path)


def _answering(claims: dict[int, tuple[str, str]]):
    def respond(message: Message) -> Message:
        name, role = claims[message.metadata.dst_node_id]
        return Message(RecordDict({"site": ConfigRecord({"name": name, "role": role})}), reply_to=message)

    return respond


def test_nodes_are_mapped_to_sites_in_consortium_order(consortium):
    claims = {7: ("external-system", "external"), 3: ("community", "train"), 5: ("academic", "train")}
    roster = discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=5)
    assert [(e.name, e.node_id, e.role) for e in roster.entries] == [
        ("academic", 5, "train"), ("community", 3, "train"), ("external-system", 7, "external"),
    ]
    assert roster.training_node_ids == {3, 5}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({1: ("academic", "train"), 2: ("community", "train"), 3: ("mystery", "train")},
         r"node 3 claims site 'mystery'"),
        ({1: ("academic", "train"), 2: ("academic", "train"), 3: ("external-system", "external")},
         r"nodes 1 and 2 both claim 'academic'"),
        ({1: ("academic", "train"), 2: ("community", "train"), 3: ("external-system", "train")},
         r"role 'train'; the consortium says 'external'"),
    ],
)
def test_mismatched_nodes_stop_the_run(consortium, claims, message):
    with pytest.raises(SiteDiscoveryError, match=message):
        discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=5)


def test_too_few_nodes_time_out_with_a_count(consortium):
    claims = {1: ("academic", "train")}
    with pytest.raises(SiteDiscoveryError, match=r"1 of 3 sites connected within 1 s"):
        discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=1)

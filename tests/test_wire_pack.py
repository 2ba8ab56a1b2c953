"""strategies/wire_pack.py and server/packed_grid.py: an adapter travels as one array on the
Deployment Engine, and arrives byte for byte as it left, under its own keys."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from server.packed_grid import PackedGrid, deployment_grid
from strategies.wire_pack import (
    LAYOUT_SUFFIX,
    PACKED_KEY,
    PackedContentError,
    is_packed,
    pack,
    unpack,
)
from tests.flower_fakes import FakeGrid, message_to


def _content() -> RecordDict:
    rng = np.random.default_rng(0)
    arrays = {f"adapter.layer.{i}.lora_{p}.weight": rng.normal(size=(4, 8)).astype(np.float32)
              for i in range(6) for p in "AB"}
    arrays["head.mortality.weight"] = rng.normal(size=(2, 8)).astype(np.float64)
    arrays["head.mortality.bias"] = np.zeros(2, dtype=np.float16)
    return RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                       "config": ConfigRecord({"server-round": 3}),
                       "metrics": MetricRecord({"num-examples": 10})})


def test_unpacked_content_is_the_same_tensors_byte_for_byte_under_the_same_keys():
    content = _content()
    back = unpack(pack(content))
    assert list(back.keys()) == ["arrays", "config", "metrics"]
    sent, got = content["arrays"], back["arrays"]
    assert list(got.keys()) == list(sent.keys())
    for key in sent.keys():
        assert got[key].data == sent[key].data and got[key].object_id == sent[key].object_id
        assert got[key].numpy().dtype == sent[key].numpy().dtype
    assert back["config"]["server-round"] == 3 and back["metrics"]["num-examples"] == 10


def test_a_packed_message_is_a_handful_of_objects_instead_of_two_per_tensor():
    def objects(content: RecordDict) -> int:
        return len(get_all_nested_objects(message_to(1, content, MessageType.TRAIN)))

    content = _content()
    packed = pack(content)
    assert list(packed["arrays"].keys()) == [PACKED_KEY] and "arrays" + LAYOUT_SUFFIX in packed
    assert objects(content) >= 2 * len(content["arrays"]) and objects(packed) <= 8


def test_packing_twice_and_unpacking_plain_content_change_nothing():
    content = _content()
    packed = pack(content)
    assert pack(packed) is packed and is_packed(packed)
    assert unpack(content) is content and not is_packed(content)


@pytest.mark.parametrize("spoil, message", [
    (lambda c: c.__setitem__("arrays" + LAYOUT_SUFFIX, ConfigRecord({"tensors": "[oops"})),
     "no JSON list"),
    (lambda c: c.__setitem__("arrays" + LAYOUT_SUFFIX, ConfigRecord({"tensors": '["x", 3]'})),
     r"expected a list of \[key, dtype, shape, stype, bytes\]"),
    (lambda c: c.__setitem__("arrays" + LAYOUT_SUFFIX, ConfigRecord(
        {"tensors": '[["x", "float32", [2], "numpy.ndarray", -5]]'})), "expected a list of"),
    (lambda c: c.__setitem__("arrays", ArrayRecord({PACKED_KEY: Array(
        dtype="uint8", shape=(3,), stype="bytes", data=b"abc")})), "the array holds 3"),
    (lambda c: c.__setitem__("arrays", ArrayRecord({"x": Array(np.zeros(2))})),
     "expected an ArrayRecord holding only 'packed'"),
])
def test_a_packed_record_that_does_not_add_up_is_refused_by_name(spoil, message):
    packed = pack(_content())
    spoil(packed)
    with pytest.raises(PackedContentError, match=message):
        unpack(packed)


def test_the_packed_grid_sends_packed_and_hands_strategies_unpacked_replies():
    seen: list[RecordDict] = []

    def site(message: Message) -> Message:
        seen.append(message.content)
        arrays = unpack(message.content)["arrays"]
        bumped = ArrayRecord({k: Array(arrays[k].numpy() + 1) for k in arrays.keys()})
        return Message(pack(RecordDict({"arrays": bumped})), reply_to=message)

    grid = PackedGrid(FakeGrid([7], site))
    content = _content()
    [reply] = grid.send_and_receive([message_to(7, content, MessageType.TRAIN)], timeout=5)
    assert is_packed(seen[0]) and list(seen[0]["arrays"].keys()) == [PACKED_KEY]
    assert list(reply.content["arrays"].keys()) == list(content["arrays"].keys())
    for key in content["arrays"].keys():
        np.testing.assert_array_equal(reply.content["arrays"][key].numpy(),
                                      content["arrays"][key].numpy() + 1)
    assert list(grid.get_node_ids()) == [7]


def test_only_the_deployment_engines_grid_is_packed():
    from flwr.superlink.grid.http_grid import HttpGrid

    fake = FakeGrid([1])
    assert deployment_grid(fake) is fake
    assert isinstance(deployment_grid(HttpGrid.__new__(HttpGrid)), PackedGrid)


def test_a_reply_whose_packing_does_not_add_up_is_that_sites_failure_not_a_crash():
    def site(message: Message) -> Message:
        node = message.metadata.dst_node_id
        content = pack(RecordDict({"arrays": ArrayRecord({"x": Array(np.ones(3))})}))
        if node == 2:  # a site (or anything between) spoiling its packed reply
            content["arrays" + LAYOUT_SUFFIX] = ConfigRecord({"tensors": "[]"})
        return Message(content, reply_to=message)

    grid = PackedGrid(FakeGrid([1, 2], site))
    good, bad = grid.send_and_receive(
        [message_to(n, _content(), MessageType.TRAIN) for n in (1, 2)], timeout=5)
    assert list(good.content["arrays"].keys()) == ["x"] and not good.has_error()
    assert bad.has_error() and not bad.has_content()
    assert "could not be unpacked" in bad.error.reason and "the array holds" in bad.error.reason

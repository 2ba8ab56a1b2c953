"""On the Deployment Engine an adapter travels as one array, not one per tensor.

Flower 1.42 sends a message as a tree of objects, one per record, per array and per array chunk,
and on the Deployment Engine each object is a signed HTTP request, four times over: coordinator →
SuperLink → SuperNode → ClientApp, and back. MiniLM's adapter and heads are 34 tensors, so a train
message and its reply were 75 objects each, and moving them took seconds of every wave on loopback
(bench/deployment.py). Packed, each ArrayRecord of a message is one array of the tensors' bytes
(Flower's own serialised `Array`s, concatenated) and a ConfigRecord beside it naming each tensor,
its dtype, shape and length: a handful of objects, byte for byte the same tensors once unpacked.

Only the transport changes. The coordinator packs what it sends and unpacks what arrives
(server/packed_grid.py) on the Deployment Engine only; a site unpacks a packed message before its
ClientApp sees it and packs its reply only when the message came packed (client/node_app.py). So
strategies, a site's handlers, its stored replies and egress digests, and the coordinator's
check of those digests all see the tensors under their own keys, as in simulation.
"""

from __future__ import annotations

import json

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

PACKED_KEY = "packed"
"""The one array of a packed ArrayRecord: the tensors' serialised bytes, in layout order."""
LAYOUT_SUFFIX = ".packed-layout"
"""A packed ArrayRecord `<name>` travels with ConfigRecord `<name>.packed-layout`."""
LAYOUT_KEY = "tensors"
"""In that ConfigRecord: a JSON list of [key, dtype, shape, stype, bytes] per tensor."""


class PackedContentError(ValueError):
    """A packed record that cannot be unpacked: its layout is missing, or does not add up."""


def is_packed(content: RecordDict) -> bool:
    """Whether any ArrayRecord of `content` travels packed."""
    return any(name + LAYOUT_SUFFIX in content for name in content.keys())


def pack(content: RecordDict) -> RecordDict:
    """`content` with every ArrayRecord packed into one array; other records as they are
    (content already packed is returned as it is)."""
    if is_packed(content):
        return content
    packed = RecordDict()
    for name, record in content.items():
        if not isinstance(record, ArrayRecord):
            packed[name] = record
            continue
        layout = [[key, record[key].dtype, list(record[key].shape), record[key].stype,
                   len(record[key].data)] for key in record.keys()]
        data = b"".join(record[key].data for key in record.keys())
        packed[name] = ArrayRecord({PACKED_KEY: Array(dtype="uint8", shape=(len(data),),
                                                      stype="bytes", data=data)})
        packed[name + LAYOUT_SUFFIX] = ConfigRecord({LAYOUT_KEY: json.dumps(layout)})
    return packed


def unpack(content: RecordDict) -> RecordDict:
    """The inverse of `pack`: each packed ArrayRecord back under its tensors' own keys, its
    layout record dropped; an unpacked `content` is returned as it is."""
    if not is_packed(content):
        return content
    unpacked = RecordDict()
    for name, record in content.items():
        if name.endswith(LAYOUT_SUFFIX) and name[: -len(LAYOUT_SUFFIX)] in content:
            continue
        if name + LAYOUT_SUFFIX not in content:
            unpacked[name] = record
            continue
        unpacked[name] = _unpacked_record(name, record, content[name + LAYOUT_SUFFIX])
    return unpacked


def _unpacked_record(name: str, record, layout_record) -> ArrayRecord:
    if not isinstance(record, ArrayRecord) or list(record.keys()) != [PACKED_KEY]:
        raise PackedContentError(f"record {name!r}: expected an ArrayRecord holding only "
                                 f"{PACKED_KEY!r} beside its {name + LAYOUT_SUFFIX!r}")
    data = record[PACKED_KEY].data
    try:
        layout = json.loads(str(layout_record[LAYOUT_KEY]))
    except (KeyError, TypeError, json.JSONDecodeError) as bad:
        raise PackedContentError(f"record {name + LAYOUT_SUFFIX!r}: no JSON list under "
                                 f"{LAYOUT_KEY!r} ({bad})") from None
    if not isinstance(layout, list) or not all(_is_entry(entry) for entry in layout):
        raise PackedContentError(f"record {name + LAYOUT_SUFFIX!r}: expected a list of "
                                 "[key, dtype, shape, stype, bytes] per tensor")
    if sum(entry[4] for entry in layout) != len(data):
        raise PackedContentError(f"record {name!r}: its layout names "
                                 f"{sum(e[4] for e in layout)} bytes, the array holds {len(data)}")
    arrays, offset = {}, 0
    for key, dtype, shape, stype, length in layout:
        arrays[key] = Array(dtype=dtype, shape=tuple(shape), stype=stype,
                            data=data[offset: offset + length])
        offset += length
    return ArrayRecord(arrays)


def _is_entry(entry) -> bool:
    return (isinstance(entry, list) and len(entry) == 5 and isinstance(entry[0], str)
            and isinstance(entry[1], str) and isinstance(entry[2], list)
            and all(isinstance(n, int) and n >= 0 for n in entry[2])
            and isinstance(entry[3], str) and isinstance(entry[4], int) and entry[4] >= 0)

"""Which node a reply speaks for.

A reply's sender is normally the node that was asked. Not always: when a node stops reporting to
the SuperLink (a hung host, a dropped connection), Flower's SuperLink answers in its place with an
error reply (`NODE_UNAVAILABLE`) whose sender is the SuperLink itself (`SUPERLINK_NODE_ID`), so
looking the sender up in the roster fails. The message it replies to still names the node.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from flwr.app import Message


def replying_node(reply: Message, sent: Iterable[Message], *, nodes: Collection[int]) -> int:
    """The node of `nodes` that `reply` answers for: its sender when that is one of `nodes`,
    else the destination of the message in `sent` it replies to (ids are set when Flower pushes
    a message)."""
    node = reply.metadata.src_node_id
    if node in nodes:
        return node
    asked = {m.metadata.message_id: m.metadata.dst_node_id for m in sent if m.metadata.message_id}
    if (answered := reply.metadata.reply_to_message_id) in asked:
        return asked[answered]
    raise KeyError(f"a reply from node {node} answers none of the messages sent "
                   f"(to nodes {sorted(nodes)})")

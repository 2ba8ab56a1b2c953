"""Just enough of Flower's runtime to drive strategies and the ClientApp in-process."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Message, MessageType, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.supercore.task_identity import TaskIdentity


def set_task_identity() -> None:
    """Flower stamps messages with the running task's identity; a unit test has none."""
    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = 0


class FakeGrid:
    """A Grid with a fixed set of connected nodes that answers with a reply function; `keys`
    are the nodes' registered public keys (PEM), as the SuperLink's `NodeInfo` carries them."""

    def __init__(self, node_ids: Iterable[int], respond=None, *,
                 keys: dict[int, bytes] | None = None) -> None:
        self.nodes = list(node_ids)
        self.respond = respond
        self.keys = keys or {}
        self.sent: list[Message] = []
        self.waiting: dict[str, Message] = {}
        self.node_info_calls = 0

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def get_nodes(self) -> list[NodeInfo]:
        self.node_info_calls += 1
        return [NodeInfo(node_id=node, public_key=self.keys.get(node, b""))
                for node in self.get_node_ids()]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None):
        messages = list(messages)
        self.sent += messages
        return [self.respond(m) for m in messages]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Keeps the messages until `pull_messages` asks for their replies; ids as Flower's."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
            self.sent.append(message)
            self.waiting[message.metadata.message_id] = message
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies `respond` gives now (None: not yet) to pushed messages, each once."""
        replies = []
        for message_id in message_ids:
            if (message := self.waiting.get(message_id)) is None:
                continue
            if (reply := self.respond(message)) is not None:
                del self.waiting[message_id]
                replies.append(reply)
        return replies


def message_to(node_id: int, content: RecordDict, message_type: str = MessageType.TRAIN) -> Message:
    set_task_identity()
    return Message(content, dst_node_id=node_id, message_type=message_type)

"""The ClientApp's side of a site worker: hand one Flower message to it, bring its reply back.

Flower 1.42's SuperNode starts a fresh ClientApp process for every message, and that process would
import PyTorch, transformers and peft and load the base again each time (about 10 s a message for
MiniLM, bench/results/clientapp_cold_start.md; far more for a Lang1-7B base). A site worker
(client/site_worker.py) is a process of the hospital's own that outlives the messages and keeps
its model, tokenized notes and imports; the ClientApp process only forwards. So this module
imports the standard library and flwr alone: what a message costs here is an interpreter start,
`import flwr` and two local socket round trips.

The link is a Unix socket in a folder only the hospital's user can open, and the worker checks
an authentication key kept beside it (multiprocessing's HMAC handshake), so no other local user
can hand the site's model work. The SuperNode's node config names the socket (`site-worker`).
"""

from __future__ import annotations

import json
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection
from pathlib import Path

from flwr.app import Context, Message

WORKER_KEY = "site-worker"
"""The node-config key naming the site worker's socket (set by `lang1-fl deploy supernode
--exec`); without it the ClientApp does the work in its own process."""
AUTHKEY_FILE = "authkey"
"""Beside the socket, mode 0600: the shared secret of multiprocessing's handshake."""
PROTOCOL = 1
"""Bumped when what travels over the link changes; a worker refuses another one."""


class SiteWorkerError(RuntimeError):
    """The site worker could not be reached, or it failed on the message (its own traceback is
    in the log of the `lang1-fl deploy supernode --exec` process)."""


def forward(message: Message, context: Context) -> Message:
    """Hand `message` to the site worker named in the node config; its reply, as this message's."""
    from flwr.common.serde import context_to_proto, message_from_proto, message_to_proto
    from flwr.proto.message_pb2 import Message as MessageProto

    address = str(context.node_config[WORKER_KEY])
    with _connect(address) as link:
        link.send_bytes(json.dumps({"protocol": PROTOCOL}).encode())
        link.send_bytes(message_to_proto(message).SerializeToString())
        link.send_bytes(context_to_proto(context).SerializeToString())
        try:
            status = json.loads(link.recv_bytes())
            body = link.recv_bytes() if status.get("ok") else b""
        except EOFError as lost:
            raise SiteWorkerError(f"site worker at {address} stopped while handling a "
                                  f"{message.metadata.message_type!r} message; see the log of "
                                  "`lang1-fl deploy supernode --exec`") from lost
    if not status.get("ok"):
        raise SiteWorkerError(f"site worker at {address}: {status.get('error', 'failed')}")
    reply = message_from_proto(MessageProto.FromString(body))
    if reply.has_error():
        raise SiteWorkerError(f"site worker at {address}: {reply.error.reason}")
    return Message(reply.content, reply_to=message)


def _connect(address: str) -> Connection:
    key_file = Path(address).parent / AUTHKEY_FILE
    try:
        authkey = key_file.read_bytes()
    except OSError as missing:
        raise SiteWorkerError(
            f"node config `{WORKER_KEY}` names {address}, but its key {key_file} cannot be read "
            f"({missing.strerror}): is the `lang1-fl deploy supernode --exec` process that started "
            "this SuperNode still running?") from missing
    try:
        return Client(address, family="AF_UNIX", authkey=authkey)
    except AuthenticationError as refused:
        raise SiteWorkerError(f"site worker at {address} refused the key in {key_file}: the "
                              "socket belongs to another worker") from refused
    except OSError as refused:
        raise SiteWorkerError(
            f"site worker at {address} does not answer ({refused.strerror or refused}): is the "
            "`lang1-fl deploy supernode --exec` process that started this SuperNode still "
            "running?") from refused

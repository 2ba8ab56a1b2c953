"""A hospital's site worker: the process that keeps the model loaded between Flower messages.

`lang1-fl deploy supernode --exec` runs it: it imports PyTorch, transformers and peft once, opens
a Unix socket in a fresh folder only this user can enter (with an authentication key beside it),
starts `flower-supernode` with that socket in its node config, and answers each message that the
SuperNode's short-lived ClientApp processes hand over (client/worker_link.py) with the site's own
ClientApp (client/app.py). So a site's base model, tokenized notes and imports are loaded once
per SuperNode, as the simulation engine loads them once per run, instead of once per message.

Messages are answered one at a time, in order: a site's ledger and stored replies see the same
sequence as without a worker. The worker stops with the SuperNode (and stops it when signalled).
What the site owns is unchanged: state folder, ledger and egress log are where the ClientApp
keeps them; the socket folder holds only the socket and its key, and is removed on exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import AuthenticationError, Connection, Listener
from pathlib import Path

from client.worker_link import AUTHKEY_FILE, PROTOCOL

log = logging.getLogger(__name__)


class SiteWorker:
    """A listening socket and the loop that answers it (`serve_forever`, in a thread)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="lang1-fl-worker-"))  # mode 0700
        authkey = secrets.token_bytes(32)
        descriptor = os.open(self.folder / AUTHKEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600)
        with os.fdopen(descriptor, "wb") as key:
            key.write(authkey)
        self.address = str(self.folder / "socket")
        self._listener = Listener(self.address, family="AF_UNIX", authkey=authkey)
        self._closed = threading.Event()
        self.answered = 0
        """Messages answered so far (successfully or with an error reply)."""

    def serve_forever(self) -> None:
        """Answer connections one at a time until `close`."""
        while not self._closed.is_set():
            try:
                link = self._listener.accept()
            except (AuthenticationError, EOFError, OSError) as failed:
                if self._closed.is_set():
                    return
                if isinstance(failed, AuthenticationError):
                    log.warning("site worker: refused a connection that failed the key check "
                                "(%s)", failed)
                elif isinstance(failed, (EOFError, ConnectionError)):
                    log.warning("site worker: a connection went away during the key check")
                else:
                    raise
                continue
            with link:
                self._answer(link)

    def _answer(self, link: Connection) -> None:
        from flwr.common.serde import context_from_proto, message_from_proto, message_to_proto
        from flwr.proto.message_pb2 import Context as ContextProto
        from flwr.proto.message_pb2 import Message as MessageProto

        from client.app import app as site_app

        try:
            header = json.loads(link.recv_bytes())
            message = message_from_proto(MessageProto.FromString(link.recv_bytes()))
            context = context_from_proto(ContextProto.FromString(link.recv_bytes()))
        except EOFError:
            log.warning("site worker: a ClientApp process went away before its message arrived")
            return
        if header.get("protocol") != PROTOCOL:
            _send_error(link, f"this site worker speaks protocol {PROTOCOL}, the ClientApp "
                        f"{header.get('protocol')!r}: the SuperNode's app and the site's "
                        "installed lang1-fl differ; install the same version")
            return
        self.answered += 1
        try:
            reply = site_app(message, context)
        except Exception as error:  # the ClientApp raises it in its process: Flower's error reply
            log.exception("site worker: %r message failed", message.metadata.message_type)
            _send_error(link, f"{type(error).__name__}: {error}")
            return
        try:
            link.send_bytes(json.dumps({"ok": True}).encode())
            link.send_bytes(message_to_proto(reply).SerializeToString())
        except OSError as lost:  # the SuperNode gave up on the message (round timeout)
            log.warning("site worker: the reply to a %r message could not be handed back (%s)",
                        message.metadata.message_type, lost)

    def close(self) -> None:
        """Stop serving: closing the listener does not wake a thread blocked in `accept`, so
        a last bare connection does (it fails the key check, and the loop sees it is closed)."""
        self._closed.set()
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as wake:
            wake.connect(self.address)
        self._listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _send_error(link: Connection, error: str) -> None:
    try:
        link.send_bytes(json.dumps({"ok": False, "error": error}).encode())
    except OSError as lost:
        log.warning("site worker: an error reply could not be handed back (%s)", lost)


def run_with_worker(node_command: Callable[[str], list[str]], env: Mapping[str, str]) -> int:
    """Start the site worker, then the SuperNode that `node_command(socket)` builds; return the
    SuperNode's exit status. SIGTERM and SIGINT are passed on to the SuperNode; the worker stops
    when it does."""
    from client.progress import show_progress

    show_progress()
    worker = SiteWorker()
    try:
        import client.app  # noqa: F401  PyTorch, transformers, peft: once, before the first message

        log.info("site worker ready at %s", worker.address)
        threading.Thread(target=worker.serve_forever, name="site-worker", daemon=True).start()
        node = subprocess.Popen(node_command(worker.address), env=dict(env))

        def pass_on(signum: int, _frame: object) -> None:
            node.send_signal(signum)

        before = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            status = node.wait()
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)
        log.info("SuperNode exited (%d) after %d message(s); site worker stops", status,
                 worker.answered)
        return status
    finally:
        worker.close()

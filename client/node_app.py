"""The ClientApp Flower starts (pyproject `clientapp`): the site's work, here or in its worker.

Under `lang1-fl deploy supernode --exec` the node config names a site worker (client/site_worker.py)
that keeps the model loaded between messages; each message is handed to it. Anywhere else — the
simulation engine, a SuperNode started by hand — the site's ClientApp (client/app.py) runs in this
process. Either way the same handlers answer, so a deployed site and a simulated one give the
same replies. A message that arrives packed (strategies/wire_pack.py: the Deployment Engine's
coordinator sends each adapter as one array) is unpacked first and answered packed. Nothing heavy
is imported at module level: this module is what every fresh ClientApp process of a SuperNode
imports.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from client.worker_link import WORKER_KEY
from strategies.wire_pack import is_packed, pack, unpack

app = ClientApp()


def _handle(message: Message, context: Context) -> Message:
    packed = message.has_content() and is_packed(message.content)
    if packed:  # the Deployment Engine's coordinator packs each adapter into one array
        message.content = unpack(message.content)
    reply = _site_reply(message, context)
    if packed and reply.has_content():
        reply.content = pack(reply.content)
    return reply


def _site_reply(message: Message, context: Context) -> Message:
    if WORKER_KEY in context.node_config:
        from client.worker_link import forward

        return forward(message, context)
    from client.app import app as site_app  # torch, transformers, peft

    return site_app(message, context)


@app.query()
def identify(message: Message, context: Context) -> Message:
    return _handle(message, context)


@app.query("privacy")
def privacy_state(message: Message, context: Context) -> Message:
    return _handle(message, context)


@app.train()
def train(message: Message, context: Context) -> Message:
    return _handle(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return _handle(message, context)

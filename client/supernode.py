"""The hospital's SuperNode: Flower 1.42's own `flower-supernode`, with its waits shortened.

When the SuperLink has no message for it, Flower 1.42's SuperNode sleeps 3 s before asking again,
and while its ClientApp works it looks for the reply every 0.5 s; both are hard-coded in
flwr/supernode/start_client_internal.py. So a message waited 1.5 s on average before the site even
saw it, twice a round. Run as `python -m client.supernode ARGS` (what `lang1-fl deploy supernode`
prints), it is `flower-supernode ARGS` asking every 0.5 s when idle and looking for the reply every
0.1 s (client/flower_waits.py says how). The price is requests: an idle node asks the SuperLink
twice a second instead of once every 3 s, each a small signed request (100 a second for 50
hospitals); the reply lookup is in the node's own memory.
"""

from __future__ import annotations

from client.flower_waits import shorten_waits

WAITS = {3: 0.5, 0.5: 0.1}
"""Flower's wait (s) → ours: between asking the SuperLink for messages when idle; for the
ClientApp's reply (and for a reply object to be stored) before pushing it."""


def main() -> None:
    """`flower-supernode` with the arguments of this process, and the shorter waits."""
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    shorten_waits(start_client_internal, WAITS)
    flower_supernode()


if __name__ == "__main__":
    main()

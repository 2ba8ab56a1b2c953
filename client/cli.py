"""`lang1-fl deploy site-key`: the hospital makes its SuperNode's key pair (client/node_identity.py).

The private half never leaves the hospital's machine; the command prints the public key's
fingerprint and the next step. The `lang1-fl` entry point (server/cli.py) attaches this parser
among the other `deploy` commands (server/launch/deploy_cli.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_site_key_parser(deploy: argparse._SubParsersAction) -> None:
    """`lang1-fl deploy site-key NAME --out DIR`."""
    key = deploy.add_parser("site-key", help="hospital: create the SuperNode key pair")
    key.add_argument("name", help="file name, e.g. the site's name: writes NAME and NAME.pub")
    key.add_argument("--out", type=Path, required=True, help="folder on the SuperNode machine")
    key.add_argument("--overwrite", action="store_true", help="replace an existing key pair")
    key.set_defaults(handler=cmd_deploy_site_key)


def cmd_deploy_site_key(args: argparse.Namespace) -> int:
    """Hospital: create the SuperNode's key pair; only the public half leaves the hospital."""
    from client.node_identity import (
        NodeKeyError,
        fingerprint,
        load_node_public_key,
        write_node_key_pair,
    )

    try:
        pair = write_node_key_pair(args.out, name=args.name, overwrite=args.overwrite)
        printed = fingerprint(load_node_public_key(pair.public_key))
    except NodeKeyError as error:  # as the other `deploy` commands report theirs
        print(f"lang1-fl deploy: {error}", file=sys.stderr)
        return 2
    print(f"wrote {pair.private_key} (PRIVATE: never leaves this machine) and {pair.public_key}")
    print(f"fingerprint: {printed}")
    print(f"next: send {pair.public_key} to the coordinator and read them the fingerprint on "
          "another channel; once registered, start the SuperNode:")
    print(f"  lang1-fl deploy supernode --superlink SUPERLINK_HOST:PORT --root-cert ca.crt "
          f"--key {pair.private_key} --site SITE.yaml")
    return 0

"""Where a site keeps its own state when its YAML does not say: a folder named after the site.

A site's privacy ledger, stored replies, egress log and optimizer memory belong to the site and its
data (`client.state`), never to where its table happens to sit (two hospitals' tables may
share a folder) nor to anything a server sends. So the default folder is derived from the site's
name alone, under one state root per machine user: `$LANG1_FL_STATE_HOME`, else
`$XDG_STATE_HOME/lang1-fl`, else `~/.local/state/lang1-fl` (the XDG base-directory convention for
state that outlives a run). A site YAML may set `state_dir` instead; two sites of one consortium
may never share one (`sites.config.ConsortiumConfig`).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_HOME_ENV = "LANG1_FL_STATE_HOME"


def state_home() -> Path:
    """The root under which sites without a `state_dir` keep their state."""
    if os.environ.get(STATE_HOME_ENV):
        return Path(os.environ[STATE_HOME_ENV]).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return (base / "lang1-fl").resolve()


def default_state_dir(site_name: str) -> Path:
    """`<state home>/sites/<site name>`."""
    return state_home() / "sites" / site_name

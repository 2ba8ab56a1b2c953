"""Progress lines from our own loggers inside Flower's processes.

Flower configures its own `flwr` logger only; the ServerApp and ClientApp processes would drop our
INFO lines (site discovery, data generation, model loading, per-round training). Each app entry
point calls `show_progress()` once; library code only ever logs.
"""

from __future__ import annotations

import logging

PACKAGES = ("sites", "client", "strategies", "server")


def show_progress(level: int = logging.INFO) -> None:
    """Send our packages' log records to stderr, once per process."""
    for name in PACKAGES:
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = False

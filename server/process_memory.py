"""The peak memory of the process the ServerApp runs in, for the run's timing record.

A coordinator sizing the server for a larger consortium needs to know whether memory grows with
the number of sites; Flower's simulation runs the ServerApp inside its own process, so the number
is read from inside, where it is exact, rather than guessed from outside.
"""

from __future__ import annotations

import sys


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process so far, in bytes; None where the platform has no
    `resource` module (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB

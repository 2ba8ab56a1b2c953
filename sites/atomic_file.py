"""Files written whole or not at all.

A resumed server, a restarted site or a reviewer must never read half a checkpoint, a half-stored
reply or a truncated report. Each is written under a temporary name in its own folder and renamed
over the old file, which the operating system does in one step on the same file system.
"""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that `path` holds either the old content or all of the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

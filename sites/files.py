"""Files written whole or not at all.

A resumed server, a restarted site or a reviewer must never read half a checkpoint, a half-stored
reply or a truncated report. Each is written under a temporary name in its own folder and renamed
over the old file, which the operating system does in one step on the same file system.
"""

from __future__ import annotations

import os
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


# -----------------------------------------------------------------------------------------------
# Writing key and certificate files: private ones readable by their owner only, nothing
# overwritten unless asked.
#
# Shared by the coordinator's certificates (server/launch/certificates.py) and a hospital's SuperNode key
# pair (client/node_identity.py). A private key is created with mode 0600 from the start, so it is
# never world-readable even for a moment, and an existing key is kept unless `overwrite`: replacing
# one silently would cut a hospital off (its registered public key no longer matches) or invalidate
# every certificate a CA signed.
# -----------------------------------------------------------------------------------------------


def write_private_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write `data` to `path` readable by its owner only (0600), created with that mode so it is
    never briefly world-readable; an existing file is kept unless `overwrite`."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it (everything it "
                              "signed or identified stops working)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)  # the umask may have narrowed it further, never widened: make it exact


def write_public_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write a public file (certificate, public key), mode 0644; kept unless `overwrite`."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o644)

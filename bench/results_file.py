"""Where a bench keeps what it measured: `bench/results/<name>.md`, beside the scripts.

Every file starts the same way — a title (the question the bench answers), the date, the
machine, the command that produced it — and then holds the numbers. A bench with its own tables
builds the body itself and calls `write_results`; a bench that prints its numbers runs its
`main` through `record_printed`, which keeps printing as before and also stores what was printed.
Docs and the README link to these files instead of copying numbers, so a number always sits next
to the command and machine that measured it.
"""

from __future__ import annotations

import io
import os
import platform
import shlex
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_line(*, threads: int | None = None, device: str | None = None) -> str:
    """The platform, its core count and, when torch is loaded, its version and threads."""
    parts = [platform.platform(), f"{os.cpu_count()} CPU cores"]
    torch = sys.modules.get("torch")
    if torch is not None:
        used = threads if threads is not None else torch.get_num_threads()
        parts.append(f"torch {torch.__version__} on {used} thread(s)")
    if device is not None:
        parts.append(f"device {device}")
    return ", ".join(parts)


def command_line(script: str, argv: Iterable[str] | None = None) -> str:
    """`python bench/<script> ARGS`, quoted so that it can be pasted into a shell."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"bench/{script}", *args])


def results_header(title: str, *, command: str, machine: str | None = None,
                   details: Iterable[str] = ()) -> list[str]:
    """The opening lines every results file shares; `details` are extra `- key: value` lines."""
    return [
        f"# {title}",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine if machine is not None else machine_line()}",
        f"- command: `{command}`",
        *(f"- {line}" for line in details),
    ]


def write_results(name: str, text: str, *, path: Path | None = None) -> Path:
    """Write `text` to `bench/results/<name>.md` (or `path`) and say where it went."""
    target = path if path is not None else RESULTS_DIR / f"{name}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text.endswith("\n") else text + "\n")
    print(f"wrote {target}")
    return target


class _Tee(io.TextIOBase):
    """Writes through to the real stream and keeps a copy."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def record_printed(name: str, title: str, main: Callable[[], int | None], *,
                   script: str | None = None, argv: Iterable[str] | None = None) -> int:
    """Run a bench's `main`, printing as it always did, and when it succeeds (returns 0 or
    None) store what it printed in `bench/results/<name>.md` under the common header.

    A failed run writes nothing: a results file only ever holds numbers of a finished run."""
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        status = main()
    finally:
        sys.stdout = tee.stream
    status = 0 if status is None else status
    if status == 0:
        command = command_line(script or f"{name}.py", argv)
        load = (f"load: 1-minute load average {os.getloadavg()[0]:.2f} at the end (other work "
                "may share the machine and slow what was timed)")
        lines = results_header(title, command=command, details=[load])
        lines += ["", "What the bench printed:", "", "```text", tee.copy.getvalue().rstrip(),
                  "```"]
        write_results(name, "\n".join(lines))
    return status

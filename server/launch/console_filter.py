"""What of Flower's output reaches a person's console during `lang1-fl run`.

`flwr run --stream` prints every Flower log record twice (once coloured, once time-stamped by a
second handler in the simulation process), Ray's and transformers' deprecation warnings, progress
bars of weight loading, and, at the end, several hundred lines of Flower's "Final results": a
sample-weighted average of every metric over all sites (`readmission.n` 5.5089e+02, AUROC `nan`)
that contradicts the report. The run's own progress lines (one per round, `server.round_progress`)
and the report say what a person needs, so by default this filter passes:

- everything of ours (the `sites`, `client`, `strategies` and `server` loggers), without Ray's
  `(ClientAppActor pid=…)` prefix;
- Flower's warnings, errors and critical records, each once, with their tracebacks, except the
  warnings known to be wrong for this toolkit (`QUIET_WARNINGS`);
- any line it does not recognise (a crash of `flwr` itself, a Python traceback), so that nothing
  that explains a failure is lost;

and holds back Flower's INFO and DEBUG records, the second copy of every Flower record, Python's
Future/Deprecation warnings and the progress bars. `lang1-fl run --verbose` shows everything.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVELS = "DEBUG|INFO|WARNING|ERROR|CRITICAL"
_FLOWER_COLOURED = re.compile(rf"^({_LEVELS}) +:(.*)$")
"""Flower's console handler (the level is coloured; seen here with the colour codes removed)."""
_FLOWER_STAMPED = re.compile(rf"^\d\d/\d\d/\d{{4}} \d\d:\d\d:\d\d:({_LEVELS}):(.*)$")
"""The second copy of each Flower record, time-stamped, from the simulation process."""
_OURS = re.compile(rf"^(?:{_LEVELS}) (?:sites|client|strategies|server)(?:\.\w+)*: ")
"""Our own loggers' lines (`client.progress.show_progress`'s format)."""
_RAY_PREFIX = re.compile(r"^(?:\x1b\[\d+m)?\(\w+ pid=\d+(?:, ip=[\d.]+)?\)(?:\x1b\[0m)? ?")
_PYTHON_WARNING = re.compile(r"^\S+:\d+: (?:FutureWarning|DeprecationWarning|"
                             r"PendingDeprecationWarning): ")
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):")

QUIET_WARNINGS = (
    # Flower's default simulation size changed in 1.32; `lang1-fl run` always sets the number
    # of simulated SuperNodes to the number of sites, so the note is wrong for our runs.
    re.compile(r"default simulated SuperNodes changed from 10 to 2"),
    # Said at every normal end of a simulation, when Ray's actors are stopped.
    re.compile(r"^Manually terminating ClientAppActor$"),
)
QUIET_LINES = (
    # Plumbing of `flwr run` a person has no use for (`--verbose` shows it).
    re.compile(r"^Flower configuration not found\. Created default configuration"),
    re.compile(r"^Starting local SuperLink on "),
    re.compile(r"^Using SuperLink: local "),
    re.compile(r"^Successfully (?:started run|installed \S+ to) "),
    re.compile(r"^\s*Loading weights:"),  # transformers' progress bar
    re.compile(r"^\s+warnings\.warn\("),  # the source line under a Python warning
    re.compile(r"^\s*$"),
)


class ConsoleFilter:
    """Line by line: the line to print (Ray's prefix removed) or None.

    A record may span several lines (a traceback under an ERROR record, the source line under a
    Python warning): lines without a prefix of their own belong to the record above them, and are
    held back only when that record was a duplicate or a quiet warning."""

    def __init__(self) -> None:
        self._swallow = False
        """Whether the current record's continuation lines are held back."""
        self._duplicate = False
        """Whether the current record is the second copy of a record already shown."""
        self._awaiting_twin: deque[tuple[str, str]] = deque(maxlen=64)
        """(form still to come, message) of Flower warnings and errors shown once."""

    def __call__(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        ray = _RAY_PREFIX.match(line)
        if ray:
            line = line[ray.end():]
        plain = _ANSI.sub("", line)
        for form, pattern in (("coloured", _FLOWER_COLOURED), ("stamped", _FLOWER_STAMPED)):
            record = pattern.match(plain)
            if record:
                return line if self._flower_record(form, record[1], record[2].strip()) else None
        if _PYTHON_WARNING.match(plain):
            return self._new_record(None, swallow=True)
        if _OURS.match(plain):
            return self._new_record(line, swallow=False)
        if _TRACEBACK.match(plain) and not self._duplicate:
            return self._new_record(line, swallow=False)
        if self._swallow or any(p.search(plain) for p in QUIET_LINES):
            return None
        return line

    def _new_record(self, line: str | None, *, swallow: bool) -> str | None:
        self._swallow, self._duplicate = swallow, False
        if line is not None and any(p.search(_ANSI.sub("", line)) for p in QUIET_LINES):
            return None
        return line

    def _flower_record(self, form: str, level: str, message: str) -> bool:
        """Whether a Flower record is shown; sets how its continuation lines are treated."""
        self._duplicate = False
        if level in ("DEBUG", "INFO"):
            self._swallow = False  # a bare line after it is not Flower's: show it
            return False
        twin = "stamped" if form == "coloured" else "coloured"
        if (form, message) in self._awaiting_twin:
            self._awaiting_twin.remove((form, message))
            self._swallow = self._duplicate = True
            return False
        if level == "WARNING" and any(p.search(message) for p in QUIET_WARNINGS):
            self._swallow = True
            return False
        self._awaiting_twin.append((twin, message))
        self._swallow = False
        return True


def filter_lines(lines: Iterable[str]) -> Iterator[str]:
    """The lines of `lines` a person sees (see the module docstring)."""
    keep = ConsoleFilter()
    for line in lines:
        shown = keep(line)
        if shown is not None:
            yield shown


def relay_filtered(process: subprocess.Popen, out: TextIO | None = None) -> int:
    """Relay `process`'s output (stdout with stderr merged into it, as text) onto `out` (stdout
    by default), filtered; returns its exit status."""
    out = out or sys.stdout
    assert process.stdout is not None
    for line in filter_lines(process.stdout):
        print(line, file=out, flush=True)
    return process.wait()

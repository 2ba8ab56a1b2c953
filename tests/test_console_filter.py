"""What of Flower's output reaches the console of `lang1-fl run` without `--verbose`.

`flower_output/simulation.log` is the recorded output of a tiny `lang1-fl run` (3 sites, 1 round):
Flower's records twice each, the SuperNodes warning, the final-results dump; `client_error.log`
is the recorded output of a round in which a ClientApp raised (each error record and its
traceback twice).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.launch.console_filter import ConsoleFilter, filter_lines, relay_filtered

SAMPLES = Path(__file__).parent / "flower_output"


def _shown(name: str) -> list[str]:
    with open(SAMPLES / name, errors="replace") as lines:
        return list(filter_lines(lines))


def test_a_run_shows_our_lines_and_none_of_flowers_info_or_final_dump():
    shown = _shown("simulation.log")
    text = "\n".join(shown)
    assert "INFO server.app: run directory: /tmp/depl-tiny/runs/simulated" in shown
    assert "INFO client.app: site academic: scored 15 test and 8 validation encounters (0.1 s)" \
        in shown  # Ray's "(ClientAppActor pid=…)" prefix removed
    for hidden in ("Final results", "'validation.mortality.n'", "Aggregated MetricRecord",
                   "Sampled 3 nodes", "changed from 10 to 2", "FutureWarning", "warnings.warn(",
                   "Loading weights", "DEBUG:", "Successfully installed", "ClientAppActor pid"):
        assert hidden not in text, hidden
    assert all(line.strip() for line in shown)
    assert len(shown) < 20  # 146 lines recorded


def test_every_error_and_its_traceback_is_shown_once():
    recorded = (SAMPLES / "client_error.log").read_text(errors="replace")
    shown = _shown("client_error.log")
    text = "\n".join(shown)
    assert recorded.count("An exception was raised when processing a message by RayBackend") == 2
    assert text.count("An exception was raised when processing a message by RayBackend") == 1
    assert text.count("Traceback (most recent call last):") == 1
    assert text.count("TypeError: RoundReplies.__init__() takes 2 positional arguments") == \
        recorded.count("TypeError: RoundReplies.__init__() takes 2 positional arguments") // 2
    assert "    raise ClientAppException(str(ex)) from ex" in shown


@pytest.mark.parametrize(("lines", "shown"), [
    # a Flower warning is shown once, its time-stamped copy not
    (["\x1b[93mWARNING \x1b[0m:   Node 3 did not reply",
      "12/03/2026 06:37:10:WARNING:Node 3 did not reply"],
     ["\x1b[93mWARNING \x1b[0m:   Node 3 did not reply"]),
    # the same error twice (two sites) is shown twice, each copy's twin once hidden
    (["\x1b[91mERROR \x1b[0m:     boom", "12/03/2026 06:37:10:ERROR:boom",
      "\x1b[91mERROR \x1b[0m:     boom", "12/03/2026 06:37:11:ERROR:boom"],
     ["\x1b[91mERROR \x1b[0m:     boom", "\x1b[91mERROR \x1b[0m:     boom"]),
    # a crash of `flwr` itself after a quiet INFO record still reaches the console
    (["\x1b[92mINFO \x1b[0m:      [ROUND 1/2]", "Traceback (most recent call last):",
      '  File "x.py", line 1, in <module>', "ValueError: bad"],
     ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
      "ValueError: bad"]),
    # Flower's note at every normal end of a simulation is not a warning for a person
    (["\x1b[93mWARNING \x1b[0m:   Manually terminating ClientAppActor",
      "INFO server.app: report: runs/r1/report.html"],
     ["INFO server.app: report: runs/r1/report.html"]),
    # our warnings pass; a Python UserWarning (not a deprecation) passes
    (["WARNING server.round_selection: left out of round selection: a × mortality",
      "/x/y.py:3: UserWarning: odd"],
     ["WARNING server.round_selection: left out of round selection: a × mortality",
      "/x/y.py:3: UserWarning: odd"]),
])
def test_case_table(lines, shown):
    keep = ConsoleFilter()
    assert [out for line in lines if (out := keep(line)) is not None] == shown


def test_relay_filtered_returns_the_status_and_prints_what_passes(tmp_path):
    script = ("import sys\n"
              "print('\\x1b[92mINFO \\x1b[0m:      Final results:')\n"
              "print('INFO server.app: round 1 of 2', file=sys.stderr)\n"
              "sys.exit(3)\n")
    out = tmp_path / "console.txt"
    with open(out, "w") as console:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        status = relay_filtered(process, console)
    assert status == 3
    assert out.read_text() == "INFO server.app: round 1 of 2\n"

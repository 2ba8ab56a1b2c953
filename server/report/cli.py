"""`lang1-fl report DIR`: (re)write report.md and report.html from what a run or a transfer
experiment recorded (metrics.json or transfer.json), without running anything.

The `lang1-fl` entry point (server/cli.py) attaches this parser. The report's modules (matplotlib
among them) are imported when the command runs, so `lang1-fl --help` answers at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_parser(commands: argparse._SubParsersAction) -> None:
    """`lang1-fl report DIR`."""
    report = commands.add_parser(
        "report", help="(re)write report.md and report.html from a run's metrics.json (or a "
        "transfer experiment's transfer.json)")
    report.add_argument("run_dir", type=Path, metavar="DIR",
                        help="a run folder (metrics.json) or transfer experiment (transfer.json)")
    report.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """(Re)write report.md and report.html: a transfer experiment's when the folder has
    `transfer.json`, else a run's from its `metrics.json`; print both paths."""
    folder = args.run_dir
    if (folder / "transfer.json").is_file():
        from server.report.transfer import write_transfer_report

        markdown = write_transfer_report(folder)
    elif (folder / "metrics.json").is_file():
        from server.report.markdown import write_report

        markdown = write_report(folder)
    else:
        raise FileNotFoundError(
            f"{folder}: no metrics.json (a run written by `lang1-fl run`) or transfer.json (a "
            "transfer experiment) there; pass the folder that holds one")
    print(markdown)
    print(markdown.with_suffix(".html"))
    return 0

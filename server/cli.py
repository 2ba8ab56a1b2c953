"""The `lang1-fl` command: one entry point, each sub-command owned by the package that does its work.

| command                                  | module                        | who runs it       |
|------------------------------------------|-------------------------------|-------------------|
| `run` (and `run --resume`)               | server/launch/run_cli.py      | coordinator       |
| `sites generate`, `sites check`          | sites/cli.py                  | both              |
| `privacy verify`, `forecast`, `audit`    | client/privacy/cli.py         | both              |
| `experiment transfer`                    | server/transfer/cli.py        | coordinator       |
| `report`                                 | server/report/cli.py          | coordinator       |
| `deploy ca`, `server-cert`               | server/launch/deploy_cli.py   | coordinator       |
| `deploy site-key`                        | client/cli.py                 | hospital IT       |
| `score`                                  | client/score.py               | hospital IT       |
| `deploy connect`, `register`, `superlink`, `supernode` | server/launch/deploy_cli.py | both |

This file only builds the parser from theirs, sets up logging and turns the domain errors into one
line and exit status 2. Heavy imports (torch, transformers, flwr) happen inside the sub-commands,
so `lang1-fl --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys

from client.cli import add_site_key_parser
from client.note_tokens import note_token_summary
from client.privacy.cli import add_privacy_parser, privacy_summary
from client.score import add_score_parser
from server.launch.deploy_cli import add_certificate_parsers, add_federation_parsers
from server.launch.run_cli import add_run_parser
from server.report.cli import add_report_parser
from server.transfer.cli import add_experiment_parser
from sites.cli import add_sites_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lang1-fl", description="Federated LoRA finetuning of a clinical language model."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_parser(commands)
    add_sites_parser(commands, site_reports=(privacy_summary,),
                     table_reports=(note_token_summary,))
    add_privacy_parser(commands)
    add_experiment_parser(commands)
    add_report_parser(commands)
    add_score_parser(commands)
    deploy = commands.add_parser(
        "deploy", help="join a real federation: CA and TLS certificates, site keys, "
        "registration, SuperLink and SuperNode command lines").add_subparsers(
        dest="deploy_command", required=True)
    add_certificate_parsers(deploy)
    add_site_key_parser(deploy)
    add_federation_parsers(deploy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from client.letter_scoring import LetterTokenError
    from client.memory_plan import MemoryPlanError
    from client.model_manifest import InvalidExportedModel
    from client.privacy.forecast import RunDoesNotFit
    from client.run_config import InvalidRunConfig
    from client.score import InvalidScoringInput
    from client.state import StateFolderClaimed
    from sites.config import InvalidSiteConfig
    from sites.encounter_table import InvalidSiteData

    try:
        return args.handler(args)
    except (InvalidSiteConfig, InvalidSiteData, InvalidRunConfig, FileNotFoundError,
            FileExistsError, StateFolderClaimed, RunDoesNotFit, LetterTokenError,
            MemoryPlanError, InvalidExportedModel, InvalidScoringInput) as error:
        print(f"lang1-fl: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""At the end of a run, ask every training site what its privacy ledger says.

The report must show what the sites' ledgers hold, not the last number each site happened to send:
a site that charged a round and crashed before answering it has spent more than its last training
reply said. So the coordinator sends `query.privacy` to each training site once the rounds are
done; the site reads its own ledger and answers with its own budget, the ε of its dataset over
every run and of this run, the head hash and its signer (client/app.py `privacy_state`). A site
that does not answer keeps its last training reply in the report, marked as such.
"""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from strategies import SiteRoster
from strategies.replies import replying_node

log = logging.getLogger(__name__)

PRIVACY_QUERY = "query.privacy"


def collect_ledgers(grid: Grid, roster: SiteRoster, *, run_name: str,
                    timeout: float) -> dict[str, dict]:
    """site name -> the `privacy` record its ledger gave, for every training site that answered."""
    messages = [Message(RecordDict({"config": ConfigRecord({"run-name": run_name})}),
                        dst_node_id=node, message_type=PRIVACY_QUERY)
                for node in roster.training_node_ids]
    ledgers = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        # a site that stopped reporting is answered for by the SuperLink: find it by its message
        site = roster.by_node(replying_node(reply, messages, nodes=roster.node_ids)).name
        if reply.has_error():
            log.warning("%s did not report its privacy ledger: %s", site, reply.error.reason)
            continue
        ledgers[site] = dict(reply.content["privacy"])
    return ledgers

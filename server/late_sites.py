"""Sites that connect after the run started: identified between rounds, trained from the next.

Between two rounds the server asks every node it has not asked yet who it is, with the same
question and checks as at the start (server/discovery.py: claim, role, key fingerprint), and
collects answers to questions asked earlier, waiting up to `ANSWER_WAIT_S` for a node that has
just connected, so that it takes part from the next round. A site that passes is added to the
strategy's roster: the next round sends it the current global state like every other site of its
role. A
node that fails is refused and logged, and the refusal is listed in the report under the round
it would have joined; the run goes on (before the start the same failure stops the run, since
then nothing has been trained yet and the coordinator is watching).
"""

from __future__ import annotations

import logging
import time

from server.discovery import SiteDiscovery
from strategies import SiteEntry

log = logging.getLogger(__name__)


ANSWER_WAIT_S = 120.0
"""How long the next round waits for a node that has just connected to say who it is (its
ClientApp may take a minute to start); a node silent for longer is not waited for again, and
joins the round after it answers."""


def admit_late_sites(discovery: SiteDiscovery, strategy, *, next_round: int,
                     answer_wait: float = ANSWER_WAIT_S, poll_s: float = 1.0) -> list[SiteEntry]:
    """Identify the nodes that connected since the last call and add the sites that pass to
    `strategy` (`SiteAware.admit`) before `next_round`; the sites added."""
    before = set(discovery.claimed)
    refused = discovery.poll()
    while discovery.asked_within(answer_wait):
        time.sleep(poll_s)
        refused += discovery.poll()
    for problem in refused:
        log.warning("before round %d: refused: %s", next_round, problem)
        strategy.run_log.failures.setdefault(next_round, []).append(f"refused: {problem}")
    joined = [entry for name, entry in discovery.claimed.items() if name not in before]
    for entry in joined:
        strategy.admit(entry)
        log.info("site %s (%s) joined: it takes part from round %d", entry.name, entry.role,
                 next_round)
    if joined and (missing := [s.name for s in discovery.consortium.sites
                               if s.name not in discovery.claimed]):
        log.info("still missing: %s", ", ".join(missing))
    return joined

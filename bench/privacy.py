"""What does DP-SGD cost in time and in utility? Each measured side by side in one run.

1. `timing`: seconds per local step of joint five-task LoRA training on all-MiniLM-L6-v2 (batch 16
   × 128 tokens, the default site settings) without DP and with DP-SGD in each opacus per-sample
   gradient mode this toolkit supports, arms interleaved over repeats so that drift hits all alike;
   prints each mode ÷ non-DP (goal ≤ 1.25). DP batches are Poisson-sampled with mean 16, so the
   ratio is also shown per example. opacus's third mode, ghost clipping, is tried too: it refuses
   joint training, whose encoder runs once per note type in a step.
2. `utility`: the federated run of the `private` consortium (`lang1-fl run`: four hospitals of
   15,000 encounters, batch 640 in pieces of 64) at ε ∈ {1, 3, 8, ∞} per site, everything else
   equal; prints the external system's macro AUROC (mean of the five tasks, in the round
   selected on validation) and its ratio to the non-DP run (goal at ε = 8: ≥ 0.95), the same for
   the training sites, and each run's external curve by round. About 85–130 minutes per run on 2
   cores; `--reuse` reads runs already in `--runs-dir`. DP noise is not seeded, so one run's
   number moves: `--runs-per-budget N` runs each budget N times and reports the means.
   `--engine in-process` runs the same apps without Ray (bench/in_process.py), `--parallel P` at
   a time: on one H200, four runs side by side took 2–5 minutes.
   `--scale K` gives every training hospital K times its encounters and K times its batch, at
   the same sampling rate, steps and ε (so the same σ): DP's noise on the averaged gradient,
   σC ÷ batch, is then divided by K. `--scale 0.1` gives default.yaml's hospitals of 1,500
   (batch 64), where DP's noise drowns what LoRA learns; compute follows K.

    python bench/privacy.py timing
    python bench/privacy.py timing --set base-model=smollm2-135m --set max-length=256 \
        --set tasks=mortality --steps 2    # the decoder, answer-letter scoring
    python bench/privacy.py utility --epsilons 8 inf 3 1
    python bench/privacy.py utility --epsilons 8 inf --scale 0.1
    python bench/privacy.py utility --epsilons 8 inf --runs-per-budget 3 --engine in-process \
        --parallel 4      # a GPU machine without Ray

What it prints is also kept, with the date, machine and command, in bench/results/privacy_<part>.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402
from server.report.data import mean, rounds_by_number, selected_round, sites_with_role, task_values  # noqa: E402
from server.report.markdown import headline  # noqa: E402
from sites.config import DEFAULT_CONSORTIUM, load_consortium  # noqa: E402
from sites.state_folder import STATE_HOME_ENV  # noqa: E402

# Used where the default consortium's sites carry no privacy block of their own.
FALLBACK_PRIVACY = {"delta": 1e-5, "max_grad_norm": 1.0, "accountant": "rdp"}


# ---------------------------------------------------------------------------------------------
# 1. Step time


def timing(data_dir: Path, *, steps: int, repeats: int, threads: int,
           overrides: tuple[str, ...] = ()) -> None:
    import torch

    from client.data import encode_site
    from client.model import base_scoring, build_model, load_tokenizer
    from client.privacy.dp_sgd import GRAD_SAMPLE_MODES, train_steps_private
    from client.run_config import default_run_config, run_config_overrides
    from client.settings import ClientSettings
    from client.site import ensure_site_data
    from client.train import train_steps
    from sites.dataset import read_site_table

    torch.set_num_threads(threads)
    consortium = load_consortium(DEFAULT_CONSORTIUM, data_root=data_dir)
    site = consortium.site("academic")
    ensure_site_data(site, seed=consortium.seed)
    defaults = ClientSettings.from_run_config(
        {**default_run_config(), **run_config_overrides(list(overrides))})
    settings = defaults.model  # default: MiniLM, 128 tokens, the five tasks, seed 2026
    model = build_model(settings, device=torch.device("cpu"))
    scoring = base_scoring(settings)
    train = encode_site(read_site_table(site), load_tokenizer(settings), settings.tasks,
                        max_length=settings.max_length, scoring=scoring)["train"]
    batch = site.training.batch_size
    optimizer = defaults.optimizer

    def non_dp(n: int, seed: int):
        return train_steps(model, train, steps=n, batch_size=batch, optimizer=optimizer, seed=seed)

    def dp(mode: str):
        def run(n: int, seed: int):
            return train_steps_private(
                model, train, steps=n, sample_rate=batch / train.size, noise_multiplier=0.6,
                max_grad_norm=1.0, optimizer=optimizer, seed=seed, grad_sample_mode=mode,
                noise_seed=seed)
        return run

    arms = {"non-DP": non_dp, **{f"DP {mode}": dp(mode) for mode in GRAD_SAMPLE_MODES}}
    per_step = {name: [] for name in arms}
    per_example = {name: [] for name in arms}
    for run in arms.values():
        run(1, 0)  # warm-up: allocator, first hooks
    for repeat in range(repeats):
        for name, run in arms.items():
            started = time.perf_counter()
            result = run(steps, repeat + 1)
            elapsed = time.perf_counter() - started
            per_step[name].append(elapsed / steps)
            per_example[name].append(elapsed / max(1, result.examples))
    base_step = statistics.median(per_step["non-DP"])
    base_example = statistics.median(per_example["non-DP"])
    print(f"\nstep time, {settings.base} ({scoring} scoring) + LoRA r={settings.lora.r}, "
          f"{len(settings.tasks)} joint task(s), batch {batch} × {settings.max_length} tokens, "
          f"{train.size} training encounters, {threads} thread(s), median of {repeats} × "
          f"{steps} steps")
    print(f"{'arm':<14} {'s/step':>8} {'÷ non-DP':>9} {'ms/example':>11} {'÷ non-DP':>9}")
    for name in arms:
        step, example = statistics.median(per_step[name]), statistics.median(per_example[name])
        print(f"{name:<14} {step:>8.3f} {step / base_step:>9.2f} {1000 * example:>11.1f} "
              f"{example / base_example:>9.2f}")
    print(f"{'DP ghost':<14} {_ghost_verdict(model, train)}")
    print("goal: DP ÷ non-DP ≤ 1.25 for the mode the toolkit uses (`hooks`)")


def _ghost_verdict(model, train) -> str:
    """Whether opacus's ghost clipping can run the joint model at all (it cannot clip a module
    whose per-sample gradient sums two forward passes, and the encoder reads two note types)."""
    import torch
    from opacus.grad_sample import GradSampleModuleFastGradientClipping

    from client.train import joint_loss

    model.train()
    wrapped = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="mean",
                                                   max_grad_norm=1.0, use_ghost_clipping=True)
    try:
        joint_loss(model, train, torch.arange(4), model.tasks)
    except NotImplementedError as refusal:
        return f"not applicable: opacus refuses ({refusal}); the encoder runs once per note type"
    finally:
        wrapped.to_standard_module()
    return "runs (not timed)"


# ---------------------------------------------------------------------------------------------
# 2. Utility at several budgets


def _variant(base: Path, epsilon: float, folder: Path, scale: float = 1) -> Path:
    """Consortium `base` with every training site's budget set to `epsilon` (∞: the privacy
    block removed), and at `scale` ≠ 1 its encounters and batch multiplied (see the docstring);
    everything else as it is."""
    raw = yaml.safe_load(base.read_text())
    for site in raw["sites"]:
        if site["role"] != "train":
            continue
        if scale != 1:
            if "synthetic" not in site:
                raise SystemExit(f"{base}: site {site['name']!r} is not synthetic; `--scale` "
                                 "can only resize generated hospitals")
            training = site.setdefault("training", {})
            batch = training.get("batch_size", 16)
            site["synthetic"]["encounters"] = round(site["synthetic"]["encounters"] * scale)
            training["batch_size"] = max(1, round(batch * scale))
            piece = training.get("max_physical_batch_size") or batch
            training["max_physical_batch_size"] = min(piece, training["batch_size"])
            site.setdefault("evaluation", {})["max_examples"] = 1000
            path = Path(site["data"]["path"])  # its own tables, not those of the unscaled size
            site["data"]["path"] = str(path.parent / f"x{scale:g}" / path.name)
        privacy = {**FALLBACK_PRIVACY, **site.get("privacy", {})}
        privacy.pop("run_epsilon_cap", None)
        if math.isinf(epsilon):
            site.pop("privacy", None)
        else:
            site["privacy"] = {**privacy, "lifetime_epsilon": epsilon, "enabled": True}
    raw["name"] = f"{raw['name']}{f'-x{scale:g}' if scale != 1 else ''}-eps-{epsilon:g}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _macro(metrics: dict) -> tuple[float, float]:
    rows = headline(metrics).values()
    return (statistics.fmean(r["external_final"] for r in rows),
            statistics.fmean(r["in_distribution_final"] for r in rows))


def _external_by_round(metrics: dict) -> str:
    """The external system's macro AUROC after each round ("0.51 → 0.55 → …", round 0 first):
    whether a curve still rises when its run ends says whether more rounds would pay."""
    external = sites_with_role(metrics, "external")
    tasks = metrics["run"]["tasks"]
    steps = []
    for _, entry in sorted(rounds_by_number(metrics).items()):
        values = [mean([task_values(entry, s, t).get("auroc") for s in external]) for t in tasks]
        steps.append("–" if None in values else f"{statistics.fmean(values):.3f}")
    return " → ".join(steps)


def _start_runs(jobs: list[tuple[Path, str]], *, data_dir: Path, runs_dir: Path,
                overrides: tuple[str, ...], engine: str, parallel: int) -> None:
    """Run each (consortium, run name): with `simulation`, `lang1-fl run` one after another;
    with `in-process`, bench/in_process.py as up to `parallel` processes at once (on one GPU
    they overlap, each being mostly kernel launches), each logging to <runs-dir>/<name>.log."""
    import subprocess

    def command(consortium: Path, name: str) -> list[str]:
        return ["--consortium", str(consortium), "--data-dir", str(data_dir), "--runs-dir",
                str(runs_dir), "--run-name", name,
                *(arg for kv in overrides for arg in ("--set", kv))]

    def fresh_hospitals(name: str) -> dict[str, str]:
        """Each run's sites keep their state (and so their lifetime budget) apart: every run
        measures hospitals that have spent nothing yet."""
        return {**os.environ, STATE_HOME_ENV: str(runs_dir / "site-state" / name)}

    if engine == "simulation":
        from server.cli import main as lang1_fl

        for consortium, name in jobs:
            started = time.perf_counter()
            os.environ.update(fresh_hospitals(name))  # the `flwr run` it starts inherits it
            if lang1_fl(["run", *command(consortium, name)]) != 0:
                raise SystemExit(f"run {name} failed; see its log")
            print(f"{name}: run took {time.perf_counter() - started:.0f} s")
        return
    from server.launch.run_cli import prepare_site_data

    for consortium in {consortium for consortium, _ in jobs}:  # once, before runs share it
        prepare_site_data(load_consortium(consortium, data_root=data_dir))
    script = Path(__file__).resolve().parent / "in_process.py"
    waiting, running, failed = list(jobs), {}, []
    while waiting or running:
        while waiting and len(running) < parallel:
            consortium, name = waiting.pop(0)
            log = open(runs_dir / f"{name}.log", "w")
            running[name] = (subprocess.Popen([sys.executable, str(script),
                                               *command(consortium, name)],
                                              stdout=log, stderr=subprocess.STDOUT,
                                              env=fresh_hospitals(name)),
                             time.perf_counter(), log)
        time.sleep(2)
        for name, (process, started, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[name]
            print(f"{name}: run took {time.perf_counter() - started:.0f} s, "
                  f"exit {process.returncode}")
            if process.returncode != 0:
                failed.append(name)
    if failed:
        raise SystemExit(f"runs {', '.join(failed)} failed; see {runs_dir}/<name>.log")


def utility(base: Path, epsilons: list[float], *, data_dir: Path, runs_dir: Path,
            reuse: bool, scale: float = 1, overrides: tuple[str, ...] = (), repeats: int = 1,
            engine: str = "simulation", parallel: int = 1) -> None:
    if not scale > 0:
        raise SystemExit(f"`--scale` is {scale:g}; expected a number > 0")
    if repeats < 1 or parallel < 1:
        raise SystemExit(f"`--runs-per-budget` is {repeats} and `--parallel` {parallel}; "
                         "expected ≥ 1")
    if parallel > 1 and engine == "simulation":
        raise SystemExit("`--parallel` needs `--engine in-process`: Flower's simulation already "
                         "runs the sites of one run side by side, and runs share its cores")
    consortia = {epsilon: _variant(base, epsilon, runs_dir / "consortia", scale)
                 for epsilon in epsilons}
    # The name says everything that differs between runs: `--reuse` must not read a run made
    # with other overrides, and a site's ledger (one per run name) must not be charged twice.
    varied = re.sub(r"[^A-Za-z0-9._-]+", "-", "".join(f"-{kv}" for kv in overrides))
    runs = {epsilon: [f"privacy-{consortium.stem}{varied}" + (f"-r{r}" if r > 1 else "")
                      for r in range(1, repeats + 1)] for epsilon, consortium in consortia.items()}
    # every budget's first run before any second one: a cut-short batch still compares budgets
    jobs = [(consortia[epsilon], runs[epsilon][r]) for r in range(repeats) for epsilon in epsilons
            if not (reuse and (runs_dir / runs[epsilon][r] / "metrics.json").exists())]
    _start_runs(jobs, data_dir=data_dir, runs_dir=runs_dir, overrides=overrides, engine=engine,
                parallel=parallel)
    results, curves = {}, {}
    for epsilon, names in runs.items():
        measured = []
        for name in names:
            metrics = json.loads((runs_dir / name / "metrics.json").read_text())
            if any(entry["failures"] or entry["skipped"] for entry in metrics["rounds"]):
                raise SystemExit(f"{runs_dir / name}: a site failed or a round was skipped; "
                                 "not comparable")
            spent = [s.get("epsilon") for s in metrics.get("privacy", {}).get("sites", {}).values()
                     if s.get("dp")]
            measured.append((*_macro(metrics), max(spent) if spent else None))
            curves[name] = (epsilon, _external_by_round(metrics), selected_round(metrics))
        results[epsilon] = measured
    reference = ([statistics.fmean(m[0] for m in results[math.inf]),
                  statistics.fmean(m[1] for m in results[math.inf])]
                 if math.inf in results else None)
    grown = f", every hospital × {scale:g} (encounters and batch)" if scale != 1 else ""
    grown += "".join(f", {kv}" for kv in overrides)
    print(f"\nmacro AUROC (mean of five tasks, round selected on validation) by per-site "
          f"budget ε, consortium {base.name}{grown} (δ, clipping, batches and steps as in its "
          f"site YAMLs); {repeats} run(s) per budget, ÷ is their mean over the non-DP mean")
    print(f"{'ε':>6} {'ε spent':>8} {'external':>9} {'÷ non-DP':>9} {'training sites':>15} "
          f"{'÷ non-DP':>9}  each run: external / training sites")
    for epsilon, measured in results.items():
        external = statistics.fmean(m[0] for m in measured)
        inside = statistics.fmean(m[1] for m in measured)
        spent = [m[2] for m in measured if m[2] is not None]
        ratio_ext = f"{external / reference[0]:>9.3f}" if reference else f"{'–':>9}"
        ratio_in = f"{inside / reference[1]:>9.3f}" if reference else f"{'–':>9}"
        shown = f"{max(spent):.3f}" if spent else "–"
        each = ", ".join(f"{m[0]:.3f}/{m[1]:.3f}" for m in measured)
        print(f"{epsilon:>6g} {shown:>8} {external:>9.3f} {ratio_ext} {inside:>15.3f} "
              f"{ratio_in}  {each}")
    print("goal: external macro AUROC at ε = 8 ÷ non-DP ≥ 0.95")
    print("\nexternal macro AUROC by round (round 0 = untrained; the table reports the round "
          "selected on validation)")
    for name, (epsilon, curve, chosen) in curves.items():
        print(f"{epsilon:>6g}  {curve}  (selected: round {chosen}; {name})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("timing", "utility", "all"))
    parser.add_argument("--data-dir", type=Path, default=Path("lang1-fl-data"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--steps", type=int, default=8, help="timing: steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="timing: interleaved repeats")
    parser.add_argument("--threads", type=int, default=1,
                        help="timing: torch threads (1 = what one simulated site gets)")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1, 3, 8, math.inf])
    parser.add_argument("--reuse", action="store_true", help="utility: read runs already there")
    parser.add_argument("--scale", type=float, default=1,
                        help="utility: every training hospital K times its size, batch too")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a run-config override, as for `lang1-fl run` (timing: the model "
                        "timed; utility: every run)")
    parser.add_argument("--runs-per-budget", type=int, default=1,
                        help="utility: runs per budget (DP noise is not seeded: runs differ)")
    parser.add_argument("--engine", choices=("simulation", "in-process"), default="simulation",
                        help="utility: `lang1-fl run` (Flower's simulation), or the same apps in "
                        "one process each (bench/in_process.py: no Ray, e.g. on a GPU machine)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="utility, in-process: runs at once")
    parser.add_argument("--consortium", default="private",
                        help="utility: the consortium whose budgets are varied (default: private)")
    args = parser.parse_args()
    data_dir, runs_dir = args.data_dir.resolve(), args.runs_dir.resolve()
    if args.part in ("timing", "all"):
        timing(data_dir, steps=args.steps, repeats=args.repeats, threads=args.threads,
               overrides=tuple(args.set))
    if args.part in ("utility", "all"):
        from sites.config import resolve_consortium

        utility(resolve_consortium(args.consortium), args.epsilons, data_dir=data_dir,
                runs_dir=runs_dir, reuse=args.reuse, scale=args.scale, overrides=tuple(args.set),
                repeats=args.runs_per_budget, engine=args.engine, parallel=args.parallel)
    return 0


if __name__ == "__main__":
    part = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "all"
    # Another base keeps its own results file: privacy_timing_smollm2-135m.md beside the default's
    bases = [a.split("=", 1)[1] for a in sys.argv if a.startswith("base-model=")]
    suffix = f"_{Path(bases[-1]).name}" if bases else ""
    sys.exit(record_printed(f"privacy_{part}{suffix}", __doc__.splitlines()[0], main,
                            script="privacy.py"))

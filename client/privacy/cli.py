"""`lang1-fl privacy forecast | verify | audit`, and the privacy lines of `lang1-fl sites check`.

A site's privacy is the site's own business (its YAML, its ledger, its key), so its commands live
with the code that does the work: the forecast (client/privacy/forecast.py), the ledger check
(client/privacy/verify.py) and the empirical audit (client/privacy/audit.py). The `lang1-fl` entry
point (server/cli.py) only attaches these parsers.

An audit's ε_lower above the accounted ε cannot happen to a working DP-SGD except with
probability β, so the site's privacy accounting must not be trusted until it is explained: the
command then exits 1 with an ALARM.

Heavy imports (torch, opacus, dp-accounting) happen inside the handlers, so `lang1-fl --help`
answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from client.run_profiles import PROFILE_HELP
from sites.config import SiteConfig, resolve_consortium
from sites.data_root import DATA_DIR_HELP


def add_privacy_parser(commands: argparse._SubParsersAction) -> None:
    """`lang1-fl privacy ...`: verify a ledger, forecast a run's ε, audit a site empirically."""
    privacy = commands.add_parser("privacy", help="privacy: forecast, verify ledgers, audit").add_subparsers(
        dest="privacy_command", required=True
    )
    verify = privacy.add_parser(
        "verify", help="check a site's signed privacy ledger: signatures, hash chain, budgets, and "
        "every epsilon against what the recorded DP-SGD steps provably spend",
        description="Check one site's privacy ledger and print the first bad line (exit 1) or a "
        "summary (exit 0): every entry's signature against the site's public key; the hash chain, "
        "and its head against --head; site, dataset, privacy unit, accountant and delta constant; "
        "rounds increasing within each run; no entry over its lifetime budget or per-run cap; and "
        "every epsilon, lifetime and per run, at or above a lower bound on what the recorded "
        "(sigma, q, steps) provably spend (dp-accounting's optimistic PLD), with dp-accounting's "
        "RDP or PLD shown beside it. The check is one-sided: overstating a spend is allowed."
    )
    verify.add_argument("ledger", type=Path, help="one site's ledger: <state folder>/<dataset>/"
                        "privacy-ledger.jsonl (`lang1-fl sites check` prints its path)")
    verify.add_argument("--public-key", type=Path, default=None, metavar="KEY.pub",
                        help="required: the site's public key, as registered (its SuperNode "
                        "`.pub`, or <state folder>/signing-key.pub for a simulated site)")
    verify.add_argument("--head", default=None, metavar="SHA256",
                        help="the last entry's hash as the site reported it (catches truncation)")
    verify.set_defaults(handler=cmd_privacy_verify)
    forecast = privacy.add_parser(
        "forecast", help="print each training site's noise multiplier and the epsilon the planned "
        "run will spend (reads only the id and split columns of each table, writes nothing; "
        "synthetic sites must be generated first: `lang1-fl sites generate`)"
    )
    forecast.add_argument("consortium", nargs="?", default="default")
    forecast.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    forecast.add_argument("--rounds", type=int, help="number of federated rounds (default: the app's)")
    forecast.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    forecast.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="run-config override, as for `lang1-fl run` (e.g. local-steps=20)")
    forecast.set_defaults(handler=cmd_privacy_forecast)
    _add_audit_parser(privacy)


def _add_audit_parser(privacy: argparse._SubParsersAction) -> None:
    audit = privacy.add_parser(
        "audit", help="train one site as configured with canary encounters planted by coin "
        "flips, guess which it trained on, and print the empirical lower bound ε_lower beside "
        "the accounted ε (exit 1 with an ALARM when above: DP is broken); writes and sends "
        "nothing")
    audit.add_argument("site_yaml", metavar="SITE_YAML",
                       help="the site's YAML; with --site, a consortium (`default`, `private`, "
                       "or a consortium YAML)")
    audit.add_argument("--site", default=None, metavar="NAME",
                       help="audit this site of the consortium SITE_YAML")
    audit.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    audit.add_argument("--canaries", type=int, default=1000,  # client.privacy.audit's default
                       help="m, canaries planted, each trained on with probability 1/2")
    audit.add_argument("--guesses", type=int, default=None, metavar="N",
                       help="a fixed, even number of guesses, half in and half out (default: the "
                       "best of a fixed grid, each at beta divided by its size)")
    audit.add_argument("--rounds", type=int, default=None,
                       help="rounds to train (default: the run config's num-server-rounds)")
    audit.add_argument("--no-dp", action="store_true",
                       help="train the same site without DP (the non-private arm)")
    audit.add_argument("--seed", type=int, default=None,
                       help="the audit's seed for canaries and coins (default: fresh, printed)")
    audit.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    audit.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="run-config override, as for `lang1-fl run` (e.g. local-steps=20)")
    audit.set_defaults(handler=cmd_privacy_audit)


# -- forecast -------------------------------------------------------------------------------------

def planned_steps(items: list[str] | None, *, rounds: int | None, profile: str | None = None
                  ) -> tuple[int, int]:
    """Rounds and run-wide local steps (0 = each site's own) a run will use: the app's run
    config with the run profile's values, the command line's `--set` overrides and `--rounds`."""
    from client.run_config import planned_run_config, read_run_config
    from client.run_profiles import profile_overrides

    config = planned_run_config(items, rounds=rounds, profile=profile_overrides(profile))
    return read_run_config(config, "num-server-rounds"), read_run_config(config, "local-steps")


def cmd_privacy_forecast(args: argparse.Namespace) -> int:
    """Per training site: σ and the ε the planned run will spend, before any note is read."""
    from client.privacy.forecast import forecast, render
    from client.site import ensure_site_data
    from sites.config import load_consortium

    consortium = load_consortium(resolve_consortium(args.consortium), data_root=args.data_dir)
    rounds, local_steps = planned_steps(args.set, rounds=args.rounds, profile=args.profile)
    for site in consortium.training_sites:
        if site.synthetic is not None and not site.data.path.exists():
            # σ needs the exact number of training encounters, which a synthetic site has only
            # once generated (its split is drawn by patient); the forecast writes nothing
            raise FileNotFoundError(
                f"{site.data.path}: site {site.name!r} has no table yet, and the forecast reads "
                "tables, never writes one; generate the synthetic sites first (`lang1-fl sites "
                f"generate {args.consortium} --data-dir {args.data_dir}`), or start the run "
                "(`lang1-fl run` generates them, then prints this forecast)")
        ensure_site_data(site, seed=consortium.seed)  # the table is there: its size is checked
    print(render(forecast(consortium, rounds=rounds, local_steps=local_steps)))
    return 0


# -- verify ---------------------------------------------------------------------------------------

def cmd_privacy_verify(args: argparse.Namespace) -> int:
    """Check a site's signed ledger against its public key, and every epsilon against what the
    recorded mechanism provably spends."""
    from client.node_identity import NodeKeyError
    from client.privacy.verify import verify_ledger

    if args.public_key is None:
        print("lang1-fl privacy verify: pass --public-key KEY.pub, the public key the site signs "
              "its ledger with: its registered SuperNode public key (the `.pub` that `lang1-fl "
              "deploy site-key` wrote), or, for a simulated site, `<state folder>/signing-key.pub` "
              f"(here probably {args.ledger.parent / 'signing-key.pub'}). Take it from where the "
              "site registered it, not from beside the ledger: whoever can rewrite the ledger can "
              "replace a key kept next to it.", file=sys.stderr)
        return 2
    # dp-accounting logs each fractional RDP order whose series did not converge and drops that
    # order; dropping orders only makes the re-derived ε larger (safer), so these are not findings.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        report = verify_ledger(args.ledger, public_key=args.public_key, head_sha256=args.head)
    except NodeKeyError as error:
        print(f"lang1-fl: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


# -- audit ----------------------------------------------------------------------------------------

def cmd_privacy_audit(args: argparse.Namespace) -> int:
    """Audit one site empirically (client/privacy/audit.py); exit 1 with an ALARM when the
    measured ε_lower exceeds the accounted ε."""
    from client.privacy.audit import run_audit
    from client.run_config import planned_run_config
    from client.run_profiles import profile_overrides
    from client.settings import ClientSettings

    site = audited_site(args.site_yaml, site_name=args.site, data_dir=args.data_dir)
    settings = ClientSettings.from_run_config(planned_run_config(
        args.set, rounds=None, profile=profile_overrides(args.profile)))
    try:
        result = run_audit(site, settings, canaries=args.canaries, guesses=args.guesses,
                           rounds=args.rounds, private=not args.no_dp, seed=args.seed)
    except ValueError as error:  # a bad --canaries/--guesses/--rounds or an external site
        print(f"lang1-fl privacy audit: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if result.alarm:
        print(alarm(result), file=sys.stderr)
        return 1
    return 0


def audited_site(path: str, *, site_name: str | None, data_dir: Path | None) -> SiteConfig:
    """The site YAML at `path`; or, with `site_name`, that site of the consortium `path` (a
    shipped name such as `default`, or a YAML), its synthetic table generated if missing.
    Relative data paths resolve by `sites.data_root`'s rule (`data_dir` when given)."""
    from client.site import ensure_site_data
    from sites.config import load_consortium, load_site

    if site_name is None:
        return load_site(path, data_root=data_dir)
    consortium = load_consortium(resolve_consortium(path), data_root=data_dir)
    site = consortium.site(site_name)
    ensure_site_data(site, seed=consortium.seed)
    return site


def render(result) -> str:
    """The audit as a coordinator or a hospital's privacy officer reads it."""
    if result.private:
        training = f"DP-SGD at σ = {result.noise_multiplier:.4g} over {result.steps} steps"
        accounted = f"{result.accounted_epsilon:.3f}"
    else:
        training = f"WITHOUT DP over {result.steps} steps"
        accounted = "∞ (no DP)"
    lines = [
        f"privacy audit of site {result.site!r} (audit seed {result.seed}): {result.canaries} "
        f"canaries, {result.included} of them trained on among n = {result.examples} training "
        f"encounters; {training}",
        f"  {'guesses (in+out)':>16} {'correct':>8} {'ε_lower at β/' + str(len(result.grid)):>16}",
    ]
    lines += [f"  {g.guesses:>16} {g.correct:>8} {g.epsilon_lower:>16.3f}" for g in result.grid]
    lines += [
        f"ε_lower = {result.epsilon_lower:.3f} (empirical, β = {result.beta:g}) vs accounted "
        f"ε = {accounted} (δ = {result.delta:g}); best of r = {result.guesses} guesses, "
        f"v = {result.correct} correct",
        "The audit's model was discarded: nothing was written to the site's ledger, nothing sent.",
    ]
    if result.private and result.ceiling <= result.accounted_epsilon:
        lines.append(
            f"NOTE: with {result.canaries} canaries no audit can show more than ε_lower = "
            f"{result.ceiling:.2f} (every guess right), at or below the accounted ε: this audit "
            "cannot raise the alarm. The ceiling passes ε only beyond ln(1/β)·e^ε ≈ 3·e^ε "
            "canaries, all guessed right; audit a smaller ε, or plant more.")
    elif result.private and not result.alarm:
        lines.append(
            "No alarm. It would sound only for a leak the audit can see: `--no-dp` shows how "
            "much that is at this shape (its ε_lower must exceed the accounted ε).")
    return "\n".join(lines)


def alarm(result) -> str:
    """The line for stderr when ε_lower exceeds the accounted ε."""
    return (f"ALARM: ε_lower = {result.epsilon_lower:.3f} exceeds the accounted ε = "
            f"{result.accounted_epsilon:.3f} at site {result.site!r}: its DP-SGD leaks more "
            f"than its accountant reports (a working DP-SGD shows this with probability at most "
            f"{result.beta:g}). Do not trust this site's privacy ledger until it is explained "
            "(opacus #820 with peft is one way: updates corrupted while ε accumulates as "
            "planned; noise or clipping switched off is another).")


# -- sites check ----------------------------------------------------------------------------------

def privacy_summary(site: SiteConfig) -> str:
    """For `lang1-fl sites check`: the site's DP budget as Hospital IT declared it, δ checked
    against its data, and what its lifetime ledger for this data has spent already."""
    from client.privacy.budget import recorded_spend
    from client.privacy.ledger import read_ledger
    from client.privacy.plan import check_delta
    from client.state import SiteState
    from sites.dataset import count_training_units, dataset_fingerprint

    if site.is_external:
        return "privacy: external site, evaluated only (it never trains, so spends no budget)"
    if not site.is_private:
        return ("privacy: NO differential privacy (no enabled `privacy` block): the adapter this "
                "site sends carries no DP guarantee")
    privacy = site.privacy
    check_delta(site, count_training_units(site))
    state = SiteState.peek(site, dataset_fingerprint(site))
    spent = recorded_spend(read_ledger(state.ledger), None, delta=privacy.delta,
                           accountant=privacy.accountant)
    return (f"privacy: DP-SGD per {privacy.unit}, lifetime budget ε = "
            f"{privacy.lifetime_epsilon:g} at δ = {privacy.delta:g} for this data (spent so far: "
            f"ε = {spent.epsilon:.3f} over {spent.entries} rounds), ε = {privacy.run_allocation:g} "
            f"per run, clipping norm {privacy.max_grad_norm:g}, accountant {privacy.accountant}; "
            f"ledger {state.ledger}; `lang1-fl privacy forecast` shows the noise")

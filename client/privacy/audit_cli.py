"""What `lang1-fl privacy audit` (server/cli.py) finds and prints: the audited site, the result
beside the accounted ε, and the ALARM.

ε_lower above the accounted ε cannot happen to a working DP-SGD except with probability β, so the
site's privacy accounting must not be trusted until it is explained: the command then exits 1.
"""

from __future__ import annotations

from pathlib import Path

from sites.config import SiteConfig


def audited_site(path: str, *, site_name: str | None, data_dir: Path | None) -> SiteConfig:
    """The site YAML at `path`; or, with `site_name`, that site of the consortium `path` (a
    shipped name such as `default`, or a YAML), its synthetic table generated if missing.
    Relative data paths resolve against `data_dir`, else the YAML's folder."""
    from client.site import ensure_site_data
    from sites.config import load_consortium, load_site, resolve_consortium

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

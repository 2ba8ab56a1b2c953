"""How sound and how fast is the ledger verifier's lower bound (client/privacy/verify_arithmetic.py)?
Its floating-point slack, how far honest ledgers sit above it, and how long a verification takes.

1. `slack`: how much round-off moves the lower bound (dp-accounting's optimistic PLD). Three
   probes over σ, q, steps and grid Δ: (a) composing round by round vs one `self_compose` of all
   steps (the same discrete distribution by two FFT routes); (b) the rounding identity: privacy
   buckets rounded up are the ones rounded down shifted by Δ per step, so ε↑ − ε↓ = T·Δ exactly
   in exact arithmetic; (c) q = 1, where the exact ε of the composed Gaussian mechanism has a
   closed form: the lower bound must stay below it.
2. `margins`: opacus's recorded ε ("rdp" and "prv") minus the lower bound at the verifier's grid,
   over a grid of (σ, q, steps): the room an honest site has above the failure line.
3. `timing`: `verify_ledger` on a 3-run × 3-round ledger of 100 steps a round (q = 0.01, 0.03,
   0.06, runs interleaved) and on a one-entry 1,000-step ledger, cold and warm (the round PLDs
   cached), for both accountants.

    python bench/ledger_verify.py slack      # about 1 minute on one core
    python bench/ledger_verify.py margins    # about 2 minutes
    python bench/ledger_verify.py timing     # about 1.5 minutes

What it prints is also kept, with the date, machine and command, in bench/results/ledger_verify_<question>.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402

DELTA = 1e-5


def _pld(sigma: float, q: float, grid: float, *, pessimistic: bool, connect_dots: bool = False):
    from dp_accounting.pld import privacy_loss_distribution

    return privacy_loss_distribution.from_gaussian_mechanism(
        sigma, sampling_prob=q, pessimistic_estimate=pessimistic,
        value_discretization_interval=grid, use_connect_dots=connect_dots)


def _exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """ε of the Gaussian mechanism with μ = sensitivity/σ (Balle & Wang 2018), by bisection."""
    from scipy.stats import norm

    def delta_at(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)

    low, high = 0.0, 200.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if delta_at(middle) > delta else (low, middle)
    return high


def slack() -> None:
    from client.privacy.verify_arithmetic import compose, epsilon_for_delta

    worst_route = worst_identity = 0.0
    closest_exact = -math.inf
    for sigma, q, rounds, steps, grid in [
        (0.6, 0.05, 3, 100, 1e-3), (0.8, 0.01, 3, 100, 1e-4), (1.5, 0.06, 5, 200, 1e-4),
        (1.0, 0.02, 10, 100, 3e-4), (5.0, 0.01, 3, 10, 1e-4), (0.55, 0.2, 4, 25, 1e-3),
    ]:
        whole = _pld(sigma, q, grid, pessimistic=False).self_compose(rounds * steps)
        one_round = _pld(sigma, q, grid, pessimistic=False).self_compose(steps)
        chained = one_round
        for _ in range(rounds - 1):
            chained = compose(chained, one_round)
        down = epsilon_for_delta(whole, DELTA)
        route = abs(epsilon_for_delta(chained, DELTA) - down)
        up = epsilon_for_delta(
            _pld(sigma, q, grid, pessimistic=True).self_compose(rounds * steps), DELTA)
        identity = abs(up - down - rounds * steps * grid)
        worst_route, worst_identity = max(worst_route, route), max(worst_identity, identity)
        print(f"σ={sigma} q={q} T={rounds * steps} Δ={grid:g}: ε↓ {down:.6f}, routes differ by "
              f"{route:.1e}, ε↑ − ε↓ − T·Δ = {up - down - rounds * steps * grid:+.1e}")
    for sigma, steps, grid in [(3.0, 10, 1e-4), (1.0, 4, 1e-4), (10.0, 100, 1e-4), (0.8, 1, 1e-5),
                               (2.0, 50, 1e-3)]:
        lower = epsilon_for_delta(_pld(sigma, 1.0, grid, pessimistic=False).self_compose(steps)
                                  if steps > 1 else _pld(sigma, 1.0, grid, pessimistic=False),
                                  DELTA)
        exact = _exact_gaussian_epsilon(math.sqrt(steps) / sigma, DELTA)
        closest_exact = max(closest_exact, lower - exact)
        print(f"q=1 σ={sigma} T={steps} Δ={grid:g}: lower {lower:.6f}, exact {exact:.6f}, "
              f"lower − exact {lower - exact:+.2e}")
    print(f"\nlargest |route difference| {worst_route:.1e}; largest |identity error| "
          f"{worst_identity:.1e}; largest (lower − exact) {closest_exact:+.1e}")


def margins() -> None:
    from client.privacy.accounting import cumulative_epsilon, noise_multiplier_for
    from client.privacy.verify_arithmetic import History, grid_for

    smallest = {"rdp": math.inf, "prv": math.inf}
    for q, steps, target in [(0.01, 300, 1.0), (0.01, 300, 3.0), (0.05, 300, 3.0),
                             (0.06, 1000, 8.0), (0.05, 300, 24.0), (0.2, 100, 4.0),
                             (0.001, 1000, 0.5), (1.0, 20, 3.0)]:
        sigma = noise_multiplier_for(target_epsilon=target, delta=DELTA, sample_rate=q,
                                     steps=steps, accountant="rdp")
        line = f"q={q} T={steps} σ={sigma:.3f}:"
        for accountant in ("rdp", "prv"):
            recorded = cumulative_epsilon(history=[(sigma, q, steps)], delta=DELTA,
                                          accountant=accountant)
            history = History(accountant=accountant, delta=DELTA,
                              grid=grid_for([(sigma, q, steps)], delta=DELTA))
            history.extend((sigma, q, steps))
            spend = history.spend()
            margin = recorded - spend.lower_bound
            smallest[accountant] = min(smallest[accountant], margin / recorded)
            line += (f"  {accountant} {recorded:.4f} (independent {spend.independent:.4f}) − "
                     f"lower {spend.lower_bound:.4f} = {margin:+.4f} ({margin / recorded:+.2%})")
        print(line)
    print(f"\nsmallest relative margin: rdp {smallest['rdp']:+.2%}, prv {smallest['prv']:+.2%}")


def timing() -> None:
    from client.privacy.accounting import cumulative_epsilon, noise_multiplier_for
    from client.privacy.ledger import append_entry
    from client.privacy.signing import simulated_signer
    from client.privacy.verify import verify_ledger
    from client.privacy.verify_arithmetic import _round_pld

    folder = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    signer = simulated_signer(folder)
    for accountant in ("rdp", "prv"):
        rates = {"a": 0.01, "b": 0.03, "c": 0.06}
        sigmas = {run: noise_multiplier_for(target_epsilon=2.0, delta=DELTA, sample_rate=q,
                                            steps=300, accountant="rdp")
                  for run, q in rates.items()}
        interleaved = [(run, r, sigmas[run], rates[run], 100) for r in (1, 2, 3) for run in rates]
        sigma = noise_multiplier_for(target_epsilon=8.0, delta=DELTA, sample_rate=0.02,
                                     steps=1000, accountant="rdp")
        for name, plan in (("3 runs × 3 rounds × 100 steps", interleaved),
                           ("1 round × 1,000 steps", [("a", 1, sigma, 0.02, 1000)])):
            path = folder / f"{accountant}-{len(plan)}.jsonl"
            _write(path, plan, accountant, signer, append_entry, cumulative_epsilon)
            _round_pld.cache_clear()
            times = []
            for _ in range(2):
                started = time.perf_counter()
                report = verify_ledger(path, public_key=signer.public_key)
                times.append(time.perf_counter() - started)
            assert report.ok, str(report)
            print(f"{accountant}, {name}: {times[0]:.1f} s cold, {times[1]:.1f} s warm "
                  f"(grid Δ = {report.grid:.2g}; ε {report.epsilon:.3f}, lower bound "
                  f"{report.lower_bound:.3f})")


def _write(path, plan, accountant, signer, append_entry, cumulative_epsilon) -> None:
    history: list = []
    per_run: dict = {}
    for run, round_, sigma, q, steps in plan:
        history.append((sigma, q, steps))
        per_run.setdefault(run, []).append((sigma, q, steps))
        append_entry(path, dict(
            run=run, round=round_, site="bench", dataset="bench-data", privacy_unit="encounter",
            sample_rate=q, noise_multiplier=sigma, max_grad_norm=1.0, steps=steps,
            examples=10_000, noise_source="csprng", delta=DELTA, accountant=accountant,
            epsilon=cumulative_epsilon(history=history, delta=DELTA, accountant=accountant),
            run_epsilon=cumulative_epsilon(history=per_run[run], delta=DELTA,
                                           accountant=accountant),
            epsilon_budget=100.0, run_epsilon_cap=None, site_config_sha256=""), signer=signer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", choices=("slack", "margins", "timing"))
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)
    {"slack": slack, "margins": margins, "timing": timing}[args.question]()


if __name__ == "__main__":
    question = sys.argv[1] if len(sys.argv) > 1 else "slack"
    sys.exit(record_printed(f"ledger_verify_{question}", __doc__.splitlines()[0], main,
                            script="ledger_verify.py"))

"""The one-run privacy audit: its statistic, its canaries, and the audit working both ways — a
non-private run shows a large ε_lower, an honest DP run never more than its ε, a broken one
raises the alarm."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from client.model import load_tokenizer
from client.privacy.audit import (
    CANARY_PREFIX,
    canary_words,
    guess_grid,
    guess_shares,
    make_canaries,
    run_audit,
    with_canaries,
)
from client.privacy.audit_bound import epsilon_lower_bound, grid_epsilon_lower_bounds, p_value
from client.privacy.cli import render
from client.settings import ClientSettings
from client.site import ensure_site_data
from server.cli import main as lang1_fl
from sites.config import load_consortium
from sites.dataset import read_site_table
from sites.tasks import TASK_NAMES, TASKS
from tests.consortium_fixtures import write_small_consortium
from tests.model_settings import model_settings
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder

# ---------------------------------------------------------------------------------------------
# The statistic (Steinke, Nasr, Jagielski 2023, Theorem 3.1)

# pitfalls.md's ceilings (every guess right) hold at δ = 1e-5, not at δ = 0, where they are a
# little higher, since the δ term only ever adds to the bound on the tail.
CEILINGS = [  # m, r, δ, ε_lower
    (500, 100, 1e-5, 3.48), (1000, 1000, 1e-5, 5.78),
    (500, 100, 0.0, 3.49), (1000, 1000, 0.0, 5.81),
]


@pytest.mark.parametrize("m, r, delta, ceiling", CEILINGS)
def test_every_guess_right_reaches_the_ceiling(m, r, delta, ceiling):
    assert epsilon_lower_bound(canaries=m, guesses=r, correct=r, delta=delta) == pytest.approx(
        ceiling, abs=0.005)


def test_at_delta_zero_the_bound_is_the_binomial_tail_at_beta():
    epsilon = epsilon_lower_bound(canaries=1000, guesses=200, correct=180, delta=0.0)
    q = math.exp(epsilon) / (1 + math.exp(epsilon))
    from scipy.stats import binom

    assert binom.sf(179, 200, q) == pytest.approx(0.05, rel=1e-6)


def test_more_correct_guesses_never_lower_the_bound():
    bounds = [epsilon_lower_bound(canaries=1000, guesses=200, correct=v, delta=1e-5)
              for v in range(0, 201)]
    assert all(b <= a + 1e-9 for a, b in zip(bounds[1:], bounds)) and bounds[-1] > 4


@pytest.mark.parametrize("r, v", [(200, 100), (200, 110), (1000, 520), (10, 10)])
def test_guesses_near_chance_refute_nothing(r, v):
    # 10 of 10 right happens to a fair coin with probability 1/1024 < β: that does refute ε = 0.
    expected_zero = (r, v) != (10, 10)
    bound = epsilon_lower_bound(canaries=1000, guesses=r, correct=v, delta=1e-5)
    assert (bound == 0.0) == expected_zero


def test_the_delta_term_only_weakens_the_bound():
    common = dict(canaries=1000, guesses=300, correct=280)
    bounds = [epsilon_lower_bound(**common, delta=d) for d in (0.0, 1e-6, 1e-5, 1e-4, 1e-3)]
    assert all(b < a for a, b in zip(bounds, bounds[1:]))
    for epsilon in (0.5, 2.0, 4.0):
        assert p_value(**common, epsilon=epsilon, delta=1e-5) >= p_value(
            **common, epsilon=epsilon, delta=0.0)
    # with 2mδ = 20 the δ term alone exceeds β even at ε = 0: nothing is refuted
    assert epsilon_lower_bound(**common, delta=1e-2) == 0.0


def test_a_grid_pays_for_its_size_with_a_union_bound():
    outcomes = [(100, 95), (200, 180), (1000, 700)]
    grid = grid_epsilon_lower_bounds(canaries=1000, outcomes=outcomes, delta=1e-5)
    alone = [epsilon_lower_bound(canaries=1000, guesses=r, correct=v, delta=1e-5)
             for r, v in outcomes]
    assert all(g < a for g, a in zip(grid, alone))
    assert grid[1] == pytest.approx(epsilon_lower_bound(canaries=1000, guesses=200, correct=180,
                                                        delta=1e-5, beta=0.05 / 3))


@pytest.mark.parametrize("change, message", [
    (dict(guesses=1001), r"`guesses` is 1001; expected at most `canaries` = 1000"),
    (dict(correct=201), r"`correct` is 201; expected at most `guesses` = 200"),
    (dict(canaries=0, guesses=0, correct=0), r"`canaries` is 0; expected at least 1"),
    (dict(correct=-1), r"`correct` is -1; expected an integer >= 0"),
    (dict(delta=1.0), r"`delta` is 1.0; expected 0 <= delta < 1"),
    (dict(beta=0.0), r"`beta` is 0.0; expected 0 < beta < 1"),
])
def test_bad_counts_are_named(change, message):
    arguments = dict(canaries=1000, guesses=200, correct=150, delta=1e-5) | change
    with pytest.raises(ValueError, match=message):
        epsilon_lower_bound(**arguments)


# ---------------------------------------------------------------------------------------------
# Canaries and guesses


def test_canaries_are_legitimate_records_with_words_of_their_own():
    tokenizer = load_tokenizer(model_settings())
    words = canary_words(tokenizer)
    assert len(words) > 10_000
    assert all(len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1
               for w in words[:200])
    canaries = make_canaries(count=300, tasks=TASK_NAMES, words=words, words_per_note=16,
                             rng=np.random.default_rng(0))
    notes = [set(n.split()) for n in canaries["admission_note"]]
    assert all(len(n) == 16 for n in notes)
    assert len(set().union(*notes)) == 300 * 16  # no word shared between canaries
    assert (canaries["split"] == "train").all()
    assert canaries["encounter_id"].str.startswith(CANARY_PREFIX).all()
    assert canaries["patient_id"].is_unique  # one encounter of its own fake patient each
    for task in TASK_NAMES:  # every label drawn, roughly uniform over the task's classes
        counts = canaries[TASKS[task].label_column].value_counts()
        assert len(counts) == TASKS[task].num_classes and counts.min() > 20


def test_byte_level_bpe_words_are_found_without_their_space_mark(tiny_llama):
    tokenizer = load_tokenizer(model_settings(base=str(tiny_llama)))
    words = canary_words(tokenizer)
    assert len(words) >= 16 and "heart" in words  # a word of the tiny BPE's training text
    assert all(len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1
               for w in words)


def test_a_table_that_already_uses_the_canary_prefix_is_refused():
    canaries = make_canaries(count=2, tasks=("mortality",), words=["alpha", "beta", "gamma"],
                             words_per_note=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=f"expected no id starting with '{CANARY_PREFIX}'"):
        with_canaries(canaries, canaries)


def test_guesses_take_the_highest_scores_in_and_the_lowest_out():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0])
    members = np.array([True, True, False, True, False, True, False, False, True, False])
    grid = guess_grid(scores, members, (0.2, 0.4, 1.0), delta=0.0, beta=0.05)
    assert [(g.guesses, g.correct) for g in grid] == [(2, 2), (4, 3), (10, 6)]


@pytest.mark.parametrize("guesses", [1, 3, 1002, True])
def test_a_fixed_guess_count_must_be_even_and_at_most_m(guesses):
    with pytest.raises(ValueError, match=rf"`guesses` is {guesses!r}; expected an even number "
                                         r"in 2\.\.1000"):
        guess_shares(1000, guesses)


# ---------------------------------------------------------------------------------------------
# The audit, both ways, on a tiny encoder
#
# Why this shape: the audit can only show a large ε_lower if the non-private model memorises its
# canaries. A 2-layer encoder of hidden 128 (the default tiny one has 32: too few dimensions for
# five linear heads to fit ~500 random label sets) trained 400 steps of 16 at the run's default
# learning rates sees each of the ~700 training encounters ~9 times; measured here it reaches
# ε_lower ≈ 3 (membership AUROC 0.89), at hidden 64 or 300 steps 1.7-2.4. Notes are cut to 16
# tokens (a canary's 16 words nearly fit) so that a run takes ~30 s on one core.

EPSILON = 8.0


@pytest.fixture(scope="module")
def audit_base(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("audit-encoder"), hidden=128)


def _site(directory: Path, *, target_epsilon: float):
    privacy = {"lifetime_epsilon": target_epsilon, "delta": 1e-5, "max_grad_norm": 1.0}
    consortium = load_consortium(write_small_consortium(
        directory, encounters=300, profiles=(("academic", "train"),), privacy=privacy))
    site = consortium.sites[0]
    ensure_site_data(site, seed=consortium.seed)
    return site


def _settings(base: Path, **overrides) -> ClientSettings:
    return ClientSettings.from_run_config(default_run_config(
        base_model=str(base), max_length=16, num_server_rounds=1, local_steps=400, **overrides))


def _summary(result) -> str:
    return (f"ε_lower = {result.epsilon_lower:.3f} (r = {result.guesses}, v = {result.correct}) "
            f"vs accounted ε = {result.accounted_epsilon:.3f}, {result.seconds:.0f} s")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return _site(tmp_path_factory.mktemp("audited"), target_epsilon=EPSILON)


def test_a_non_private_run_gives_a_large_lower_bound(site, audit_base):
    result = run_audit(site, _settings(audit_base), canaries=1000, private=False, seed=1)
    print(_summary(result))  # shown by `pytest -rP`
    assert not result.private and math.isinf(result.accounted_epsilon) and not result.alarm
    assert result.epsilon_lower >= 2.0, result
    assert result.steps == 400 and result.seed == 1


def test_a_dp_run_stays_below_its_epsilon_and_leaves_no_trace(site, audit_base):
    folder = site.data.path.parent
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    result = run_audit(site, _settings(audit_base), canaries=1000, seed=2)
    print(_summary(result))
    assert result.private and result.noise_multiplier > 0
    assert result.accounted_epsilon == pytest.approx(EPSILON, rel=0.01)
    assert result.epsilon_lower <= EPSILON and not result.alarm, result
    # the plan is made for the training split with the canaries the coins put in it
    table = read_site_table(site)
    assert result.examples == (table["split"] == "train").sum() + result.included
    assert 400 < result.included < 600
    # no ledger, no egress log, no stored reply: the folder is as it was
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    # 1,000 canaries cannot show ε = 8 even with every guess right, and the output says so
    assert result.ceiling == pytest.approx(5.27, abs=0.01)
    assert "this audit cannot raise the alarm" in render(result)


def test_a_dp_sgd_that_adds_no_noise_raises_the_alarm(tmp_path, audit_base, monkeypatch,
                                                       capsys):
    """The failure ε cannot see: the plan claims ε = 1 while the training adds (almost) no
    noise. Through the command line, which must exit 1 with an ALARM."""
    import client.privacy.audit as audit

    honest = audit.train_steps_private

    def broken(*args, **kwargs):
        return honest(*args, **{**kwargs, "noise_multiplier": 1e-6})

    monkeypatch.setattr(audit, "train_steps_private", broken)
    _site(tmp_path, target_epsilon=1.0)
    argv = ["privacy", "audit", str(tmp_path / "consortium.yaml"), "--site", "academic",
            "--data-dir", str(tmp_path), "--rounds", "1", "--seed", "3",
            "--set", f"base-model={audit_base}", "--set", "max-length=16",
            "--set", "local-steps=400"]
    assert lang1_fl(argv) == 1
    captured = capsys.readouterr()
    assert "\nALARM: ε_lower = " in "\n" + captured.err  # after the progress bars
    line = next(x for x in captured.out.splitlines() if x.startswith("ε_lower = "))
    measured, accounted = float(line.split()[2]), float(line.split("accounted ε = ")[1].split()[0])
    assert accounted == pytest.approx(1.0, abs=0.002) and measured > accounted, captured.out
    print(line)


def test_the_command_audits_a_site_yaml_without_dp(site, audit_base, tmp_path, capsys):
    entry = {"name": "solo", "role": "train", "tasks": list(site.tasks),
             "data": {"path": str(site.data.path), "format": "parquet"},
             "training": {"batch_size": 16, "local_steps": 3}, "device": "cpu",
             "privacy": {"lifetime_epsilon": 8, "delta": 1e-5, "max_grad_norm": 1.0}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(entry))
    argv = ["privacy", "audit", str(path), "--no-dp", "--canaries", "40", "--guesses", "10",
            "--seed", "4", "--set", f"base-model={audit_base}", "--set", "max-length=16"]
    assert lang1_fl(argv) == 0
    out = capsys.readouterr().out
    assert "privacy audit of site 'solo' (audit seed 4): 40 canaries" in out
    assert "WITHOUT DP over 9 steps" in out  # 3 rounds (the run config's) × the site's 3 steps
    assert "vs accounted ε = ∞ (no DP) (δ = 1e-05); best of r = 10 guesses" in out
    assert "nothing was written to the site's ledger, nothing sent" in out


def test_the_command_plants_as_many_canaries_as_the_library_by_default():
    from client.privacy.audit import DEFAULT_CANARIES
    from server.cli import build_parser

    args = build_parser().parse_args(["privacy", "audit", "site.yaml"])
    assert args.canaries == DEFAULT_CANARIES and args.guesses is None and not args.no_dp


def test_an_external_site_is_not_audited(tmp_path, audit_base):
    consortium = load_consortium(write_small_consortium(tmp_path, encounters=30))
    with pytest.raises(ValueError, match="site 'external-system' has role `external`"):
        run_audit(consortium.sites[-1], _settings(audit_base))

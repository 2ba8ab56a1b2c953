"""`lang1-fl privacy forecast` and the privacy block of a site YAML."""

from __future__ import annotations

import pytest
import yaml

from client.privacy.forecast import forecast
from client.privacy.plan import plan_privacy
from server.cli import main as lang1_fl
from sites.config import InvalidSiteConfig, load_consortium
from sites.dataset import count_training_encounters, read_site_table
from sites.encounter_table import TrainingUnits
from tests.consortium_fixtures import write_small_consortium

PRIVACY = {"lifetime_epsilon": 3.0, "delta": 1e-4, "max_grad_norm": 0.5}


def test_forecast_prints_noise_and_planned_epsilon_per_training_site(tmp_path, capsys):
    consortium = write_small_consortium(tmp_path, encounters=200, local_steps=5, privacy=PRIVACY)
    data = tmp_path / "data"
    assert lang1_fl(["sites", "generate", str(consortium), "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert lang1_fl(["privacy", "forecast", str(consortium), "--data-dir", str(data),
                     "--rounds", "4"]) == 0
    out = capsys.readouterr().out
    config = load_consortium(consortium, data_root=data)
    rows = forecast(config, rounds=4, local_steps=0)
    assert [r.site for r in rows] == ["academic", "community"]  # the external site never trains
    for row in rows:
        n = int((read_site_table(config.site(row.site))["split"] == "train").sum())
        assert row.examples == n == count_training_encounters(config.site(row.site))
        assert row.plan.sample_rate == pytest.approx(16 / n)
        assert row.plan.total_steps == 20
        assert 0.999 * 3.0 <= row.plan.planned_epsilon <= 3.0
        line = next(line for line in out.splitlines() if line.startswith(row.site))
        assert f"{row.plan.noise_multiplier:.4f}" in line and "4×5" in line
        assert f"{row.plan.planned_epsilon:.3f}" in line
        assert row.spent.epsilon == 0 and row.fits  # nothing spent on this data yet


def test_forecast_marks_a_site_without_dp(tmp_path, capsys):
    consortium = write_small_consortium(tmp_path, encounters=100)
    assert lang1_fl(["sites", "generate", str(consortium), "--data-dir", str(tmp_path / "data")]) == 0
    assert lang1_fl(["privacy", "forecast", str(consortium), "--data-dir",
                     str(tmp_path / "data")]) == 0
    assert "(no DP)" in capsys.readouterr().out


def test_forecast_refuses_a_delta_not_below_one_over_n(tmp_path, capsys):
    consortium = write_small_consortium(tmp_path, encounters=100,
                                        privacy={**PRIVACY, "delta": 0.02})
    assert lang1_fl(["sites", "generate", str(consortium), "--data-dir", str(tmp_path / "data")]) == 0
    assert lang1_fl(["privacy", "forecast", str(consortium), "--data-dir",
                     str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "`privacy.delta` of site 'academic' is 0.02; expected below 1/n" in err


def test_plan_uses_all_of_a_small_site_when_the_batch_is_larger(tmp_path):
    consortium = write_small_consortium(tmp_path, encounters=20, privacy=PRIVACY)
    site = load_consortium(consortium, data_root=tmp_path / "data").sites[0]
    plan = plan_privacy(site, counts=TrainingUnits(encounters=10, patients=8), rounds=1,
                        steps_per_round=3)
    assert plan.sample_rate == 1.0 and plan.examples == 10


def test_a_patient_level_plan_counts_patients_and_keeps_the_encounters_per_step(tmp_path):
    consortium = write_small_consortium(tmp_path, privacy={**PRIVACY, "unit": "patient"})
    site = load_consortium(consortium, data_root=tmp_path / "data").sites[0]
    plan = plan_privacy(site, counts=TrainingUnits(encounters=400, patients=320), rounds=2,
                        steps_per_round=5)
    assert plan.unit == "patient" and plan.examples == 320
    assert plan.sample_rate == pytest.approx(16 / 400)  # about 16 encounters per step
    # δ = 1e-4 is below 1/encounters but not below 1/patients: n counts patients
    with pytest.raises(InvalidSiteConfig, match=r"expected below 1/n = 5e-05 for its n = 20000 "
                       "training patients"):
        plan_privacy(site, counts=TrainingUnits(encounters=25000, patients=20000), rounds=1,
                     steps_per_round=1)


@pytest.mark.parametrize("change, message", [
    ({"delta": 1.5}, "`sites[0].privacy.delta` is 1.5; expected a number with 0 < delta < 1"),
    ({"lifetime_epsilon": 0}, "`sites[0].privacy.lifetime_epsilon` is 0; expected a finite "
                              "number > 0"),
    ({"lifetime_epsilon": -1.0}, "`sites[0].privacy.lifetime_epsilon` is -1.0; expected a finite"),
    ({"lifetime_epsilon": None}, "`sites[0].privacy.lifetime_epsilon` is missing; expected the ε "
                                 "budget of this site's data over all runs"),
    ({"run_epsilon_cap": 4.0}, "`sites[0].privacy.run_epsilon_cap` is 4.0; expected a number > 0 "
                               "and at most `lifetime_epsilon` (3.0)"),
    ({"run_epsilon": 2.0}, "`sites[0].privacy.run_epsilon` is no longer read; what one run may "
                           "spend is `run_epsilon_cap`"),
    ({"max_grad_norm": None}, "`sites[0].privacy.max_grad_norm` is missing; expected the clipping"),
    ({"accountant": "gdp"}, "`sites[0].privacy.accountant` is 'gdp'; expected 'rdp' or 'prv'"),
    ({"unit": "visit"}, "`sites[0].privacy.unit` is 'visit'; expected 'encounter' (one row) or "
                        "'patient'"),
    ({"enabled": "yes"}, "`sites[0].privacy.enabled` is 'yes'; expected true or false"),
    ({"noise_seed": -3}, "`sites[0].privacy.noise_seed` is -3; expected an integer >= 0 (tests "
                         "only)"),
    ({"epsilon": 3}, "`sites[0].privacy.epsilon` is not a known key; expected one of"),
    ({"target_epsilon": 3}, "`sites[0].privacy.target_epsilon` is no longer read; the budget now "
                            "belongs to the site's data across runs: set `lifetime_epsilon`"),
    ({"ledger_dir": "ledgers"}, "`sites[0].privacy.ledger_dir` is no longer read; the ledger now "
                                "lives in the site's own state folder: set `state_dir`"),
])
def test_invalid_privacy_blocks_are_named(tmp_path, change, message):
    privacy = {k: v for k, v in {**PRIVACY, **change}.items() if v is not None}
    consortium = write_small_consortium(tmp_path, privacy=privacy)
    with pytest.raises(InvalidSiteConfig) as error:
        load_consortium(consortium)
    assert message in str(error.value)
    assert str(error.value).startswith("consortium.yaml: ") or "consortium.yaml" in str(error.value)


def test_privacy_block_defaults_and_the_state_folder(tmp_path):
    consortium = write_small_consortium(tmp_path, privacy=PRIVACY)
    config = load_consortium(consortium, data_root=tmp_path / "data")
    academic, external = config.sites[0], config.sites[2]
    assert academic.is_private and academic.privacy.accountant == "rdp"
    assert academic.privacy.unit == "encounter" and academic.privacy.run_allocation == 3.0
    # state_dir resolves against the YAML's folder, whatever --data-dir says
    assert academic.state_dir == tmp_path / "state" / "academic"
    assert not external.is_private  # never trains, so it has no budget to spend
    raw = yaml.safe_load(consortium.read_text())
    raw["sites"][0]["privacy"]["enabled"] = False
    raw["sites"][0]["privacy"]["run_epsilon_cap"] = 1
    raw["sites"][0]["privacy"]["signing_key"] = "keys/academic"
    consortium.write_text(yaml.safe_dump(raw))
    site = load_consortium(consortium, data_root=tmp_path / "data").sites[0]
    assert not site.is_private and site.privacy.run_allocation == 1
    assert site.privacy.signing_key == tmp_path / "keys" / "academic"


def test_the_shipped_private_consortium_is_default_ten_times_larger_with_a_budget_each():
    from sites.config import resolve_consortium

    default = load_consortium(resolve_consortium("default"))
    private = load_consortium(resolve_consortium("private"))
    assert [s.name for s in private.sites] == [s.name for s in default.sites]
    for mine, theirs in zip(private.sites, default.sites):
        assert mine.synthetic.profile == theirs.synthetic.profile
        grown = 10 if mine.role == "train" else 1
        assert mine.synthetic.encounters == grown * theirs.synthetic.encounters
        # Larger hospitals, so not the default's tables: a table of the wrong size is refused.
        assert (mine.data.path == theirs.data.path) == (grown == 1)
    for site in private.training_sites:  # the q of batch 64 at the default size, in pieces
        assert site.training.batch_size == 640 and site.training.max_physical_batch_size == 64
    assert all(s.is_private and s.privacy.lifetime_epsilon == 8 and s.privacy.delta == 1e-5
               for s in private.training_sites)
    assert not any(s.is_private for s in default.sites)
    assert not private.site("external_system").is_private


def test_the_forecast_writes_nothing_and_names_a_missing_synthetic_table(tmp_path, capsys):
    """Issue 34 #16: `lang1-fl privacy forecast private` generated 60,000 synthetic encounters
    as a side effect. σ needs the exact count of training encounters, which a synthetic site has
    only once generated, so the forecast says which table is missing and how to make it."""
    consortium = write_small_consortium(tmp_path, encounters=100, privacy=PRIVACY)
    data = tmp_path / "data"
    assert lang1_fl(["privacy", "forecast", str(consortium), "--data-dir", str(data)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"lang1-fl: {data / 'academic' / 'encounters.parquet'}: site 'academic' has no table "
        "yet, and the forecast reads tables, never writes one; generate the synthetic sites "
        f"first (`lang1-fl sites generate {consortium} --data-dir {data}`), or start the run "
        "(`lang1-fl run` generates them, then prints this forecast)")
    assert not data.exists()

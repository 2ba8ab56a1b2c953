"""The report's privacy section: a reviewer reads each site's numbers, how to verify them, and
what the guarantee covers; old metrics.json files without privacy information still render."""

from __future__ import annotations

import json

from server.report.markdown import render_markdown, write_report
from server.report.privacy import plot_privacy, render_privacy_section
from tests.test_report import _metrics

HEAD = "ab12cd34ef56" + "0" * 52
REASON = "site a: training round 2 would spend ε = 9.1 > target 8"


def _dp_site(epsilon_per_round: dict[str, float], **overrides) -> dict:
    """A DP site as `server.report.metrics_file.privacy_summary` writes it."""
    return {
        "dp": True, "source": "ledger", "dataset": "0123456789abcdef", "unit": "encounter",
        "delta": 1e-5, "lifetime_epsilon": 16.0, "run_epsilon_allocation": 8.0,
        "max_grad_norm": 1.0, "accountant": "rdp", "signer": "SHA256:k3y",
        "epsilon": 9.1234, "run_epsilon": max(epsilon_per_round.values()), "ledger_head": HEAD,
        "ledger_entries": 4, "noise_multiplier": 0.8123, "sample_rate": 0.0125,
        "noise_source": "csprng", "epsilon_per_round": epsilon_per_round,
        "declined_rounds": [], **overrides,
    }


def _private_metrics(client_level: dict | None = None) -> dict:
    """The report fixture with site a under DP (declining round 2) and site b without DP."""
    metrics = _metrics()
    metrics["run"]["run_name"] = "trial-7"
    metrics["rounds"].append({**metrics["rounds"][1], "round": 2})
    for entry in metrics["rounds"]:
        entry["declined"] = {"a": REASON} if entry["round"] == 2 else {}
    metrics["privacy"] = {
        "sites": {
            "a": _dp_site({"1": 7.4567, "2": 7.4567}, declined_rounds=[2]),
            "b": {"dp": False, "source": "ledger", "declined_rounds": []},
        },
        "client_level": client_level,
    }
    return metrics


def _non_private_metrics() -> dict:
    metrics = _metrics()
    metrics["privacy"] = {"sites": {s: {"dp": False, "declined_rounds": []} for s in ("a", "b")},
                          "client_level": None}
    return metrics


def _section(metrics: dict, figure: str | None = None) -> str:
    return "\n".join(render_privacy_section(metrics, figure))


def test_site_table_shows_each_sites_own_budget_its_ledgers_spend_and_short_head():
    text = _section(_private_metrics())
    assert ("| a | encounter | 1e-05 | 7.46 | 8 | 9.12 of 16 | 4 | 2 | `ab12cd34ef56` | ledger |"
            in text)
    assert "| a | 0.812 | 0.0125 | 1 | rdp | csprng | `SHA256:k3y` |" in text
    assert "| b | **no DP** |" in text
    assert "**Sites without DP: b.**" in text


def test_spend_above_the_run_allocation_or_the_lifetime_budget_is_flagged():
    metrics = _private_metrics()
    metrics["privacy"]["sites"]["a"]["run_epsilon"] = 8.5
    assert "**8.50 (over budget)**" in _section(metrics)
    metrics = _private_metrics()
    metrics["privacy"]["sites"]["a"]["epsilon"] = 16.5
    assert "**7.46 (over budget)**" in _section(metrics)


def test_verify_command_names_the_sites_ledger_key_and_full_head_hash():
    text = _section(_private_metrics())
    assert ("lang1-fl privacy verify '<state folder of a>/0123456789abcdef/privacy-ledger.jsonl' "
            f"--public-key '<a: registered public key>' --head {HEAD}") in text
    assert "verify '<state folder of b>" not in text  # nothing to verify at a site without DP


def test_declined_round_is_listed_with_its_reason():
    text = _section(_private_metrics())
    assert f"- Round 2, site a: {REASON}" in text
    assert "No site declined a round." in _section(_non_private_metrics())


def test_checklist_states_unit_release_and_what_is_not_covered():
    text = _section(_private_metrics())
    for phrase in ("Record-level DP", "a: encounter", "group privacy", "Poisson sampling",
                   "post-processing", "**Not covered:**", "`num-examples`",
                   "cryptographically secure generator", "Hyperparameter tuning",
                   "no server message can open a fresh one", "docs/privacy-review.md"):
        assert phrase in text, phrase


def test_without_any_dp_site_there_is_no_figure_and_no_checklist(tmp_path):
    metrics = _non_private_metrics()
    assert plot_privacy(metrics, tmp_path / "eps.png") is False
    assert not (tmp_path / "eps.png").exists()
    text = _section(metrics)
    assert "No ε figure: no site trained with DP." in text
    assert "**No site trained with DP-SGD:**" in text
    assert "What the guarantee covers" not in text


def test_plot_written_when_a_site_used_dp(tmp_path):
    assert plot_privacy(_private_metrics(), tmp_path / "eps.png") is True
    assert (tmp_path / "eps.png").stat().st_size > 1000


def test_old_metrics_without_privacy_still_render(tmp_path):
    metrics = _metrics()
    assert "privacy" not in metrics
    assert "No privacy information recorded" in render_markdown(metrics, figure=None)
    assert plot_privacy(metrics, tmp_path / "eps.png") is False


def test_client_level_dp_is_rendered_when_present(tmp_path):
    client = {"noise_multiplier": 1.25, "clipping_norm": 0.5, "delta": 1e-3, "epsilon": 4.321,
              "epsilon_per_round": {"1": 2.0, "2": 4.321}, "num_sites": 2, "accountant": "rdp",
              "privacy_unit": "site"}
    text = _section(_private_metrics(client))
    assert "### Client-level DP" in text
    assert "| 1.250 | 0.5 | 0.001 | 4.32 | 2 | rdp | site |" in text
    assert "With few sites (2)" in text
    assert "### Client-level DP" not in _section(_private_metrics())
    assert plot_privacy(_private_metrics(client), tmp_path / "eps.png") is True


def test_write_report_places_privacy_section_and_figure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_private_metrics()))
    text = write_report(tmp_path).read_text()
    assert (tmp_path / "privacy_per_round.png").stat().st_size > 1000
    assert "![Cumulative ε per round](privacy_per_round.png)" in text
    assert text.index("## What left the sites") < text.index("## Privacy") < text.index(
        "## Missing sites")


def test_write_report_without_dp_writes_no_privacy_figure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_non_private_metrics()))
    text = write_report(tmp_path).read_text()
    assert not (tmp_path / "privacy_per_round.png").exists()
    assert "| a | **no DP** |" in text


def test_the_summary_shows_what_the_sites_reported_never_the_coordinators_yaml(tmp_path):
    """Finding 4: the coordinator's consortium file says ε = 8 per site, but the hospital's own
    YAML (which governs DP there) said 3, and its ledger ends one round after its last training
    reply (charged, then it crashed). The summary shows the site's budget and its ledger."""
    from server.report.metrics_file import privacy_summary
    from sites.config import load_consortium
    from strategies import RunLog
    from tests.consortium_fixtures import write_small_consortium

    consortium = load_consortium(write_small_consortium(
        tmp_path, privacy={"lifetime_epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0}))
    own = {"dp": True, "dataset": "0123456789abcdef", "unit": "patient", "delta": 1e-5,
           "lifetime_epsilon": 3.0, "run_epsilon_allocation": 3.0, "max_grad_norm": 0.5,
           "accountant": "rdp", "signer": "SHA256:k3y", "noise_multiplier": 1.1,
           "sample_rate": 0.02, "noise_source": "csprng", "declined": ""}
    log = RunLog(privacy={1: {"academic": {**own, "epsilon": 1.2, "run_epsilon": 1.2,
                                           "ledger_head": "h1"}},
                          2: {"academic": {**own, "epsilon": 2.0, "run_epsilon": 2.0,
                                           "ledger_head": "h2"}}})
    ledger = {**own, "epsilon": 2.6, "run_epsilon": 2.6, "ledger_head": "h3",
              "ledger_entries": 3, "run_rounds": "1,2,3"}
    summary = privacy_summary(consortium, log, {"academic": ledger})["sites"]
    academic = summary["academic"]
    assert academic["source"] == "ledger" and academic["lifetime_epsilon"] == 3.0
    assert academic["unit"] == "patient" and academic["max_grad_norm"] == 0.5
    assert (academic["epsilon"], academic["run_epsilon"], academic["ledger_head"]) == (
        2.6, 2.6, "h3")
    assert academic["epsilon_per_round"] == {"1": 1.2, "2": 2.0}
    # No answer to the closing query: the last training reply, labelled as such.
    fallback = privacy_summary(consortium, log)["sites"]["academic"]
    assert fallback["source"] == "last training reply" and fallback["ledger_head"] == "h2"
    # A site that reported nothing is not credited with the YAML's DP.
    assert summary["community"] == {"dp": False, "source": "nothing reported",
                                    "declined_rounds": []}

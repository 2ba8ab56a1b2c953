"""docs/configuration.md is generated from the settings' own documentation and kept in step."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from server import config_reference
from sites.config import SiteConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_page_is_what_the_settings_render():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == config_reference.render(), (
        "docs/configuration.md is stale: run `python -m server.config_reference`")


def test_every_run_config_key_is_documented_with_its_default():
    defaults = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    rows = config_reference.run_config_keys()
    assert [key for key, _, _ in rows] == list(defaults)
    for key, default, meaning in rows:
        assert default == defaults[key]
        assert len(meaning) > 10, key


def test_every_run_profile_is_in_the_reference_with_what_it_sets():
    from client.run_profiles import run_profiles

    rows = config_reference.run_profile_docs()
    assert {name: values for name, values, _ in rows} == run_profiles()
    assert [name for name, _, _ in rows] == ["paper-512", "decoder"]
    assert all(len(meaning) > 10 for _, _, meaning in rows)


def test_a_profile_without_a_comment_is_refused(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("# Explained.\n[tool.lang1-fl.profiles.told]\nmax-length = 64\n\n"
                         "[tool.lang1-fl.profiles.bare]\nmax-length = 32\n")
    with pytest.raises(ValueError, match=r"pyproject.toml:5: run profile `bare` has no comment"):
        config_reference.run_profile_docs(pyproject)


def test_every_site_yaml_key_is_in_the_reference():
    keys = {row[0] for row in config_reference.site_yaml_keys()}
    top = {f.name for f in dataclasses.fields(SiteConfig)} - {"source"}
    assert top <= keys
    for nested in ("data.path", "data.split.by", "data.split.test_from", "training.batch_size",
                   "privacy.lifetime_epsilon", "privacy.unit", "synthetic.profile"):
        assert nested in keys


def test_a_key_without_a_comment_is_refused(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.flwr.app.config]\n# Explained.\nexplained = 1\n\nbare = 2\n')
    with pytest.raises(ValueError, match=r"pyproject.toml:5: run-config key `bare` has no comment"):
        config_reference.run_config_keys(pyproject)


def test_a_key_right_below_another_does_not_borrow_its_comment(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.flwr.app.config]\n# Beta 1.\nbeta-1 = 0.9\nbeta-2 = 0.99\n')
    with pytest.raises(ValueError, match=r"pyproject.toml:4: run-config key `beta-2`"):
        config_reference.run_config_keys(pyproject)


def test_a_field_s_docstring_is_the_string_right_under_it():
    @dataclasses.dataclass
    class Undocumented:
        documented: int = 1
        """Says what it is."""
        silent: int = 2

    assert config_reference.field_docs(Undocumented) == {"documented": "Says what it is."}

"""A hospital's own table, as it comes (issue 34): where its path resolves, the mappings that let
its labels, delimiter and notes through, the data a run must refuse before it trains, and the
summary `lang1-fl sites check` prints for the coordinator."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from server.cli import main as lang1_fl
from sites.config import DEFAULT_CONSORTIUM, InvalidSiteConfig, load_consortium, load_site
from sites.data_root import DEFAULT_DATA_DIR, SHIPPED_FOLDER, run_data_dir
from sites.dataset import read_site_table
from sites.encounter_table import InvalidSiteData
from sites.site_check import MIN_POSITIVES, check_site_data
from sites.site_settings import SyntheticSpec
from sites.synthetic import generate_site
from tests.tiny_models import keyword_table


def _site(**changes) -> dict:
    site = {"name": "north", "role": "train", "data": {"path": "table.csv"},
            "tasks": ["mortality"], "device": "cpu"}
    return {**site, **changes}


def _write(directory: Path, site: dict, table: pd.DataFrame | None = None, *,
           name: str = "site.yaml", **to_csv) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if table is not None:
        table.to_csv(directory / site["data"]["path"], index=False, **to_csv)
    file = directory / name
    file.write_text(yaml.safe_dump(site, sort_keys=False))
    return file


def _table(n: int = 40) -> pd.DataFrame:
    return keyword_table(n)


# -- 1, 10, 15: one rule for where a relative data path resolves -----------------------------------


def test_run_reads_the_table_sites_check_read(tmp_path, capsys):
    """A consortium naming site YAMLs with relative data paths: `sites check` and `lang1-fl run`
    (no --data-dir) both resolve them beside the site YAML; the run gets past the data (it stops
    later, at the base model named here, before Flower)."""
    _write(tmp_path / "north", _site(), _table())
    _write(tmp_path / "south", _site(name="south", role="external"), _table())
    consortium = tmp_path / "consortium.yaml"
    consortium.write_text(yaml.safe_dump({"name": "c", "seed": 1, "sites": [
        "north/site.yaml", "south/site.yaml"]}))
    assert lang1_fl(["sites", "check", str(consortium)]) == 0
    capsys.readouterr()
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "runs"),
            "--set", "base-model=/nowhere/base"]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err
    assert "`base` is '/nowhere/base'" in error and "has no data there" not in error


def test_relative_paths_resolve_by_one_rule(tmp_path):
    file = _write(tmp_path / "conf", _site())
    assert load_site(file).data.path == tmp_path / "conf" / "table.csv"  # the YAML's folder
    assert load_site(file, data_root=tmp_path / "d").data.path == tmp_path / "d" / "table.csv"
    shipped = load_consortium(DEFAULT_CONSORTIUM)  # the shipped consortia: ./lang1-fl-data
    assert shipped.sites[0].data.path == (DEFAULT_DATA_DIR / "academic/encounters.parquet").resolve()
    assert run_data_dir(None, file) is None  # the run config's data-dir "": each YAML's folder
    assert run_data_dir(None, DEFAULT_CONSORTIUM) == DEFAULT_DATA_DIR.resolve()
    assert run_data_dir(tmp_path / "d", file) == tmp_path / "d"


def test_a_missing_table_states_the_rule_and_suggests_data_dir(tmp_path, capsys):
    file = _write(tmp_path, _site())
    assert lang1_fl(["sites", "check", str(file)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'table.csv'}: does not exist" in error
    assert (f"relative `data.path` resolves against {tmp_path} (the folder of site.yaml); pass "
            "--data-dir FOLDER") in error and "\n" not in error


def test_a_symlink_loop_is_a_clear_error(tmp_path):
    os.symlink(tmp_path / "b.csv", tmp_path / "a.csv")
    os.symlink(tmp_path / "a.csv", tmp_path / "b.csv")
    file = _write(tmp_path, _site(data={"path": "a.csv"}))
    with pytest.raises(InvalidSiteConfig, match=r"`data.path` is 'a.csv', a symlink loop; expected"):
        load_site(file)


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_a_path_leaving_the_data_folder_is_refused_unless_allowed(tmp_path, how):
    outside = tmp_path / "outside.csv"
    _table().to_csv(outside, index=False)
    if how == "symlink":
        (tmp_path / "conf").mkdir()
        os.symlink(outside, tmp_path / "conf" / "table.csv")
    path = "../outside.csv" if how == "dotdot" else "table.csv"
    file = _write(tmp_path / "conf", _site(data={"path": path}))
    with pytest.raises(InvalidSiteConfig, match=rf"`data.path` is '{path}', which leads outside its "
                       r"data folder \(to .*outside.csv\); relative `data.path` resolves against "
                       r".*allow_outside_data_dir: true"):
        load_site(file)
    allowed = _write(tmp_path / "conf", _site(data={"path": path, "allow_outside_data_dir": True}))
    assert len(read_site_table(load_site(allowed))) == 40


def test_sites_check_knows_a_consortium_checks_each_site_or_one(tmp_path, capsys):
    _write(tmp_path / "a", _site(name="a"), _table())
    consortium = tmp_path / "c.yaml"
    consortium.write_text(yaml.safe_dump({"name": "c", "seed": 1, "sites": [
        "a/site.yaml", {**_site(name="b", role="external"), "data": {"path": "b.csv"}}]}))
    _table().to_csv(tmp_path / "b.csv", index=False)
    assert lang1_fl(["sites", "check", str(consortium)]) == 0
    out = capsys.readouterr().out
    assert "site a (train)" in out and "site b (external)" in out
    assert lang1_fl(["sites", "check", str(consortium), "--site", "b"]) == 0
    out = capsys.readouterr().out
    assert "site b (external)" in out and "site a" not in out
    assert lang1_fl(["sites", "check", str(consortium), "--site", "z"]) == 2
    assert "has no site 'z'; expected one of a, b" in capsys.readouterr().err


@pytest.mark.parametrize("example", sorted((SHIPPED_FOLDER / "default").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_the_shipped_example_site_yamls_pass_sites_check(tmp_path, capsys, example):
    site = load_site(example, data_root=tmp_path)
    table = generate_site(SyntheticSpec(site.synthetic.profile, 400), site_name=site.name, seed=3)
    site.data.path.parent.mkdir(parents=True)
    table.to_parquet(site.data.path, index=False)
    assert lang1_fl(["sites", "check", str(example), "--data-dir", str(tmp_path)]) == 0
    assert f"site {site.name} ({site.role})" in capsys.readouterr().out


# -- 5, 6, 7: what a mapping lets through -------------------------------------------------------------


@pytest.mark.parametrize("columns", [{"note": "text"},
                                     {"admission_note": "text", "discharge_note": "text"}])
def test_one_note_column_serves_every_task(tmp_path, columns):
    table = _table().drop(columns=["discharge_note"]).rename(columns={"admission_note": "text"})
    file = _write(tmp_path, _site(tasks=["readmission", "mortality"],
                                  data={"path": "table.csv", "columns": columns}), table)
    back = read_site_table(load_site(file))
    assert back["discharge_note"].tolist() == back["admission_note"].tolist() == (
        table["text"].tolist())
    assert back["readmission"].tolist() == table["readmission"].tolist()


def test_an_external_site_needs_no_split(tmp_path):
    file = _write(tmp_path, _site(role="external"), _table().drop(columns=["split"]))
    back = read_site_table(load_site(file))
    assert set(back["split"]) == {"test"} and len(back) == 40


@pytest.mark.parametrize(("yes", "no"), [("Y", "N"), ("yes", "NO"), ("True", "false"),
                                         ("y", "n")])
def test_binary_words_need_no_mapping(tmp_path, yes, no):
    table = _table()
    table["mortality"] = table["mortality"].map({1: yes, 0: no})
    back = read_site_table(load_site(_write(tmp_path, _site(), table)))
    assert back["mortality"].tolist() == _table()["mortality"].tolist()


def test_labels_in_the_tables_own_words_are_mapped(tmp_path):
    table = _table()
    table["mortality"] = table["mortality"].map({1: "Expired", 0: "Alive"})
    table.loc[2, "mortality"] = "Home"  # another word of class `no`, in another case
    site = _site(data={"path": "table.csv", "label_values": {
        "mortality": {"yes": "expired", "no": ["ALIVE", "home"]}}})
    text = yaml.safe_dump(site).replace("'yes':", "yes:").replace("'no':", "no:")  # YAML 1.1 booleans
    file = tmp_path / "site.yaml"
    table.to_csv(tmp_path / "table.csv", index=False)
    file.write_text(text)
    back = read_site_table(load_site(file))
    assert back["mortality"].tolist() == _table()["mortality"].tolist()
    table.loc[5, "mortality"] = "Unknown"
    table.to_csv(tmp_path / "table.csv", index=False)
    with pytest.raises(InvalidSiteData, match=r"row 6, column `mortality` is 'Unknown'; expected "
                       r"one of ALIVE \(no\), home \(no\), expired \(yes\) \(`data.label_values"):
        read_site_table(load_site(file))


@pytest.mark.parametrize(("suffix", "separator", "data"), [
    (".csv", ";", {"delimiter": ";"}), (".tsv", "\t", {}), (".csv", "|", {"delimiter": "|"})])
def test_delimiters(tmp_path, suffix, separator, data):
    site = _site(data={"path": f"table{suffix}", **data})
    file = _write(tmp_path, site, _table(), sep=separator)
    assert len(read_site_table(load_site(file))) == 40


def test_a_semicolon_file_read_as_commas_says_which_delimiter_to_set(tmp_path):
    file = _write(tmp_path, _site(), _table(), sep=";")
    with pytest.raises(InvalidSiteData, match=r"set `data.delimiter: ';'`"):
        read_site_table(load_site(file))


def test_task_order_and_upper_case_names_are_accepted(tmp_path):
    raw = {"name": "c", "seed": 1, "sites": [
        _site(name="StMarys", tasks=["mortality", "los"]),
        _site(name="NORTH", tasks=["los", "mortality"], role="external")]}
    file = tmp_path / "c.yaml"
    file.write_text(yaml.safe_dump(raw))
    consortium = load_consortium(file)
    assert [s.name for s in consortium.sites] == ["StMarys", "NORTH"]  # kept as written
    assert consortium.sites[0].state_dir.name == "StMarys"
    assert consortium.tasks == ("mortality", "los")
    raw["sites"][1]["name"] = "stmarys"
    file.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidSiteConfig, match=r"`sites\[1\].name` is 'stmarys', already used by "
                       r"`sites\[0\]` \('StMarys'\); expected site names that differ in more"):
        load_consortium(file)


# -- 9: what is refused before anything trains ---------------------------------------------------


@pytest.mark.parametrize(("change", "match"), [
    ({"training": {"batch_size": 10**12}},
     r"`training.batch_size` is 1000000000000; expected an integer from 1 to 1,000,000"),
    ({"evaluation": {"batch_size": 10**12}}, r"`evaluation.batch_size` is 1000000000000"),
    ({"role": "external", "privacy": {"lifetime_epsilon": 8, "delta": 1e-5,
                                      "max_grad_norm": 1.0}},
     r"`privacy` is 'a privacy block'; expected none for an external site"),
    ({"data": {"path": "t.csv", "label_values": {"mortality": {"maybe": "M"}}}},
     r"`data.label_values.mortality.maybe` is \('M',\); expected keys from no, yes"),
    ({"data": {"path": "t.csv", "columns": {"note": "a", "admission_note": "b"}}},
     r"`data.columns.note` and `data.columns.admission_note` are both set"),
    ({"data": {"path": "t.csv", "columns": {"patient_id": "x", "encounter_id": "x"}}},
     r"only the two note types may share one column"),
    ({"data": {"path": "t.parquet", "delimiter": ";"}},
     r"`data.delimiter` is ';'; expected no `delimiter` for a format other than csv"),
])
def test_settings_refused(tmp_path, change, match):
    with pytest.raises(InvalidSiteConfig, match=match):
        load_site(_write(tmp_path, _site(**change)))


def test_a_header_named_twice_is_refused(tmp_path):
    table = _table()
    (tmp_path / "table.csv").write_text(
        table.to_csv(index=False).replace("los,", "mortality,", 1))
    file = _write(tmp_path, _site())
    with pytest.raises(InvalidSiteData, match=r"the header names column `mortality` twice "
                       r"\(columns 7 and 8\); expected each column name once"):
        read_site_table(load_site(file))


def test_a_jsonl_key_named_twice_is_refused(tmp_path):
    line = ('{"encounter_id": "e1", "patient_id": "p1", "split": "train", "admission_note": "a", '
            '"mortality": 1, "mortality": 0}\n')
    (tmp_path / "t.jsonl").write_text(line)
    file = _write(tmp_path, _site(data={"path": "t.jsonl"}))
    with pytest.raises(InvalidSiteData, match=r"column `mortality` twice"):
        read_site_table(load_site(file))


def test_a_nul_byte_in_a_note_is_refused(tmp_path):
    table = _table()
    table.loc[4, "admission_note"] = "sepsis\x00cut"
    file = _write(tmp_path, _site(), table)
    with pytest.raises(InvalidSiteData, match=r"row 5, column `admission_note` holds a NUL byte"):
        read_site_table(load_site(file))


def test_a_training_site_without_training_rows_is_refused(tmp_path, capsys):
    table = _table().assign(split="test")
    file = _write(tmp_path, _site(), table)
    with pytest.raises(InvalidSiteData, match=r"site 'north' has role 'train' but no encounter in "
                       r"the train split"):
        check_site_data(load_site(file))
    consortium = tmp_path / "c.yaml"
    consortium.write_text(yaml.safe_dump({"name": "c", "seed": 1, "sites": ["site.yaml"]}))
    assert lang1_fl(["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path)]) == 2
    assert "no encounter in the train split" in capsys.readouterr().err  # before Flower starts


def test_one_class_in_a_split_is_a_warning_not_an_error(tmp_path):
    """A small hospital with no death in its train split still joins a federation (it learns the
    other tasks; the other sites teach this one): warned, with the mapping hint, not refused."""
    table = _table()
    table.loc[table["split"] == "train", "mortality"] = 0
    check = check_site_data(load_site(_write(tmp_path, _site(), table)))
    assert ("site north: mortality has one class only in the train split: the site's own steps "
            "teach it nothing of this task; if that is unexpected, check `data.columns` and "
            "`data.label_values`") in check.warnings
    table = _table()
    table.loc[table["split"] == "test", "mortality"] = 1
    check = check_site_data(load_site(_write(tmp_path, _site(), table)))
    assert ("site north: mortality has one class only in the test split: its AUROC there is "
            "undefined (not scored)") in check.warnings


# -- 17 and the summary: positives per split, thin labels, lengths in tokens ------------------------


def test_sites_check_shows_positives_warns_on_thin_labels_and_counts_tokens(tmp_path, capsys):
    table = _table(60)  # 45 train (22 positives), 15 test (8 positives)
    file = _write(tmp_path, _site(training={"batch_size": 100}), table)
    assert lang1_fl(["sites", "check", str(file), "--set", "max-length=12"]) == 0
    out = capsys.readouterr().out
    mortality = next(line for line in out.splitlines() if line.startswith("mortality"))
    assert "48.9% (22)" in mortality and "53.3% (8)" in mortality
    thin = next(line for line in out.splitlines() if "positives, so a noisy AUROC" in line)
    assert f"site north: fewer than {MIN_POSITIVES} positives, so a noisy AUROC there: " in thin
    assert "mortality 'yes' test 8" in thin
    assert "`training.batch_size` 100 is larger than its 45 training encounters" in out
    assert "admission note words: p10 " in out
    tokens = next(line for line in out.splitlines() if "note tokens" in line)
    assert tokens.startswith("admission note tokens (all-MiniLM-L6-v2): p10 ")
    assert "% of notes cut at max-length 12" in tokens
    assert not any(note in out for note in table["admission_note"])  # no note text

"""Site and consortium YAML: what loads, how paths resolve, and every error message, pinned."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from sites.config import (
    DEFAULT_CONSORTIUM,
    ConsortiumConfig,
    DataSource,
    EvaluationSettings,
    InvalidSiteConfig,
    SiteConfig,
    TrainingSettings,
    load_consortium,
    load_site,
)
from sites.tasks import TASK_NAMES

SITE = {
    "name": "academic",
    "role": "train",
    "data": {"path": "academic/encounters.parquet", "format": "parquet"},
    "tasks": list(TASK_NAMES),
    "training": {"batch_size": 16, "local_steps": 8},
    "evaluation": {"batch_size": 64, "max_examples": 0},
    "device": "auto",
    "synthetic": {"profile": "academic", "encounters": 100},
}


def _with(change: dict | None = None, drop: tuple[str, ...] = ()) -> dict:
    """SITE with dotted keys set (`change`) or removed (`drop`)."""
    site = copy.deepcopy(SITE)
    for dotted, value in (change or {}).items():
        *parents, last = dotted.split(".")
        node = site
        for key in parents:
            node = node[key]
        node[last] = value
    for dotted in drop:
        *parents, last = dotted.split(".")
        node = site
        for key in parents:
            node = node[key]
        del node[last]
    return site


def _write(path: Path, content: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


# -- site YAML ------------------------------------------------------------------------------------

BAD_SITES = [
    (_with({"role": "trainer"}), r"`role` is 'trainer'; expected 'train' or 'external'$"),
    (_with({"name": "Academic Site"}), r"`name` is 'Academic Site'; expected a name of letters, digits"),
    (_with({"name": 7}), r"`name` is 7; expected a name"),
    (_with(drop=("name",)), r"`name` is missing; expected the site's name"),
    (_with(drop=("data",)), r"`data` is missing; expected a mapping with `path` and `format`"),
    (_with(drop=("data.path",)), r"`data.path` is missing; expected the table's path"),
    (_with({"data": "academic.parquet"}), r"`data` is 'academic.parquet'; expected a mapping"),
    (_with({"data.format": "xlsx"}),
     r"`data.format` is 'xlsx'; expected 'parquet', 'jsonl' or 'csv'"),
    (_with({"data.path": "table.xlsx"}, drop=("data.format",)),
     r"`data.format` is missing and the suffix of 'table.xlsx' says nothing"),
    (_with({"data.pth": "x.csv"}), r"`data.pth` is not a known key; expected one of path, format, "
                                   r"columns, .* \(did you mean `path`\?\)"),
    (_with({"trainig": {"batch_size": 4}}),
     r"`trainig` is not a known key; expected one of name, .* \(did you mean `training`\?\)"),
    (_with({"training.batchsize": 4}), r"`training.batchsize` is not a known key.*`batch_size`"),
    (_with({"training.batch_size": "16"}),
     r"`training.batch_size` is '16'; expected an integer from 1 to 1,000,000"),
    (_with({"training.local_steps": 0}), r"`training.local_steps` is 0; expected an integer >= 1"),
    (_with({"training.batch_size": 2.5}), r"`training.batch_size` is 2.5; expected an integer"),
    (_with({"training.max_physical_batch_size": -8}),
     r"`training.max_physical_batch_size` is -8; expected an integer from 1 to 1,000,000, or 0 "
     r"for the whole"),
    (_with({"evaluation.batch_size": True}),
     r"`evaluation.batch_size` is True; expected an integer"),
    (_with({"evaluation.max_examples": -1}),
     r"`evaluation.max_examples` is -1; expected an integer >= 0 \(0 = the whole split\)"),
    (_with({"training": [16, 8]}), r"`training` is \[16, 8\]; expected a mapping with keys"),
    (_with({"tasks": ["readmission", "mortalty"]}),
     r"`tasks\[1\]` is 'mortalty'; expected one of readmission, .* \(did you mean 'mortality'\?\)"),
    (_with({"tasks": ["los", "los"]}), r"`tasks\[1\]` is 'los'; expected each task listed once"),
    (_with({"tasks": []}), r"`tasks` is \[\]; expected a non-empty list of tasks"),
    (_with({"tasks": "los"}), r"`tasks` is 'los'; expected a list of task names"),
    (_with({"device": "gpu"}), r"`device` is 'gpu'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (_with({"precision": "fp16"}),
     r"`precision` is 'fp16'; expected 'auto' \(bf16 where the device computes it natively\) or "
     r"'fp32'"),
    (_with({"synthetic.profile": "teaching"}),
     r"`synthetic.profile` is 'teaching'; expected one of academic, community"),
    (_with({"synthetic.encounters": 0}), r"`synthetic.encounters` is 0; expected an integer >= 1"),
    (_with(drop=("synthetic.encounters",)), r"`synthetic.encounters` is missing"),
]


@pytest.mark.parametrize(("site", "match"), BAD_SITES)
def test_bad_site_yaml_names_file_key_and_expectation(tmp_path: Path, site: dict,
                                                      match: str) -> None:
    file = _write(tmp_path / "site.yaml", site)
    with pytest.raises(InvalidSiteConfig, match=match) as error:
        load_site(file)
    message = str(error.value)
    assert message.startswith(f"{file}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: [unclosed\n", r"does not parse as YAML \(.* at line 2\); expected a site YAML"),
        ("", r": is empty; expected a site YAML file"),
        ("- name: a\n", r": the top level is a list; expected a mapping with keys name, role"),
    ],
)
def test_unreadable_site_yaml(tmp_path: Path, text: str, match: str) -> None:
    file = _write(tmp_path / "site.yaml", text)
    with pytest.raises(InvalidSiteConfig, match=match):
        load_site(file)


def test_missing_site_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidSiteConfig, match=r"nope\.yaml: does not exist; expected a site"):
        load_site(tmp_path / "nope.yaml")


def test_good_site_loads_typed(tmp_path: Path) -> None:
    file = _write(tmp_path / "conf" / "site.yaml", _with(drop=("training", "evaluation", "device")))
    site = load_site(file)
    assert site == SiteConfig(
        name="academic", role="train",
        data=DataSource(path=tmp_path / "conf" / "academic" / "encounters.parquet",
                        format="parquet"),
        tasks=TASK_NAMES, training=TrainingSettings(), evaluation=EvaluationSettings(),
        synthetic=site.synthetic, source=file)
    assert site.synthetic.encounters == 100 and not site.is_external


@pytest.mark.parametrize(
    ("path", "data_root", "expected"),
    [
        ("a/t.csv", None, "conf/a/t.csv"),  # relative to the YAML file's folder
        ("a/t.csv", "root", "root/a/t.csv"),  # relative to data_root when given
        ("sub/../t.csv", None, "conf/t.csv"),  # `..` that stays inside is fine
    ],
)
def test_relative_data_paths(tmp_path: Path, path: str, data_root: str | None,
                             expected: str) -> None:
    site = _with({"data.path": path}, drop=("data.format",))
    file = _write(tmp_path / "conf" / "site.yaml", site)
    site = load_site(file, data_root=tmp_path / data_root if data_root else None)
    assert site.data.path == tmp_path / expected
    assert site.data.format == "csv"  # from the suffix


def test_absolute_data_path_is_kept(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "t.jsonl"
    site = _with({"data.path": str(absolute)}, drop=("data.format",))
    file = _write(tmp_path / "site.yaml", site)
    site = load_site(file, data_root=tmp_path / "root")
    assert site.data == DataSource(path=absolute, format="jsonl")


def test_dataclass_rules_hold_when_built_in_code() -> None:
    with pytest.raises(InvalidSiteConfig,
                       match=r"^`batch_size` is 0; expected an integer from 1 to 1,000,000$"):
        TrainingSettings(batch_size=0)


# -- consortium YAML ------------------------------------------------------------------------------


def _consortium(*sites: object, **extra: object) -> dict:
    return {"name": "test", "seed": 1, "sites": list(sites), **extra}


def _site(name: str, role: str = "train", tasks: list[str] | None = None) -> dict:
    return _with({"name": name, "role": role, "tasks": tasks or list(TASK_NAMES)})


BAD_CONSORTIA = [
    (_consortium(_site("a"), _site("a", "external")),
     r"`sites\[1\].name` is 'a', already used by `sites\[0\]` \('a'\); expected site names that differ"),
    (_consortium(_site("a", "external"), _site("b", "external")),
     r"`sites\[\*\].role`: no site has role 'train'; expected at least one"),
    (_consortium(_site("a"), _site("b", tasks=["mortality"])),
     r"`sites\[1\].tasks` of site 'b' is \['mortality'\]; expected the same tasks as site 'a'"),
    (_consortium(_site("a"), _with({"name": "b", "role": "trainer"})),
     r"`sites\[1\].role` is 'trainer'; expected 'train' or 'external'"),
    (_consortium(_with({"name": "a", "training.batch_size": -2})),
     r"`sites\[0\].training.batch_size` is -2; expected an integer from 1"),
    (_consortium(_site("a"), "sites/missing.yaml"),
     r"`sites\[1\]` is 'sites/missing.yaml', which does not exist; expected a path to a site YAML"),
    (_consortium(_site("a"), 42), r"`sites\[1\]` is 42; expected a mapping with keys name"),
    (_consortium(), r"`sites` is empty; expected at least one site"),
    ({"name": "test", "sites": [_site("a")]}, r"`seed` is missing; expected an integer >= 0"),
    (_consortium(_site("a"), seed=-1), r"`seed` is -1; expected an integer >= 0"),
    ({"name": "test", "seed": 1, "sites": {"a": 1}}, r"`sites` is \{'a': 1\}; expected a list"),
    (_consortium(_site("a"), sede=3), r"`sede` is not a known key; expected one of name, seed, "
                                      r"sites \(did you mean `seed`\?\)"),
]


@pytest.mark.parametrize(("raw", "match"), BAD_CONSORTIA)
def test_bad_consortium_yaml(tmp_path: Path, raw: dict, match: str) -> None:
    file = _write(tmp_path / "consortium.yaml", raw)
    with pytest.raises(InvalidSiteConfig, match=match) as error:
        load_consortium(file)
    assert str(error.value).startswith(f"{file}: ")
    assert "\n" not in str(error.value)


def test_error_in_a_referenced_site_file_names_that_file(tmp_path: Path) -> None:
    site_file = _write(tmp_path / "sites" / "b.yaml", _with({"name": "b", "device": "tpu"}))
    file = _write(tmp_path / "consortium.yaml", _consortium(_site("a"), "sites/b.yaml"))
    with pytest.raises(InvalidSiteConfig, match=re.escape(f"{site_file}: `device` is 'tpu'")):
        load_consortium(file)


def test_consortium_mixes_inline_sites_and_site_files(tmp_path: Path) -> None:
    _write(tmp_path / "sites" / "b.yaml", _with({"name": "b", "role": "external",
                                                 "data.path": "b.parquet"}))
    file = _write(tmp_path / "consortium.yaml", _consortium(_site("a"), "sites/b.yaml"))
    consortium = load_consortium(file)
    assert [s.name for s in consortium.sites] == ["a", "b"]
    assert consortium.site("a").data.path == tmp_path / "academic" / "encounters.parquet"
    assert consortium.site("b").data.path == tmp_path / "sites" / "b.parquet"  # its own folder
    assert consortium.site("b").source == tmp_path / "sites" / "b.yaml"
    rooted = load_consortium(file, data_root=tmp_path / "data")
    assert rooted.site("b").data.path == tmp_path / "data" / "b.parquet"


def test_default_consortium_loads() -> None:
    consortium = load_consortium(DEFAULT_CONSORTIUM, data_root=Path("/data"))
    assert isinstance(consortium, ConsortiumConfig)
    assert [s.name for s in consortium.training_sites] == [
        "academic", "community", "safety_net", "surgical"]
    assert [s.name for s in consortium.external_sites] == ["external_system"]
    assert consortium.tasks == TASK_NAMES
    for site in consortium.sites:
        assert site.data.path == Path("/data") / site.name / "encounters.parquet"
        assert site.synthetic is not None and site.synthetic.profile == site.name
        assert site.training == TrainingSettings(16, 80)
        assert site.evaluation == EvaluationSettings(64, 0)
    with pytest.raises(InvalidSiteConfig, match=r"has no site 'nowhere'; expected one of academic"):
        consortium.site("nowhere")

"""The configuration reference (`docs/configuration.md`), generated from the settings themselves.

Every run-config key is documented once, by the comment above it in `pyproject.toml`
(`[tool.flwr.app.config]`, which also holds its default), every run profile by the comment above
its table (`[tool.lang1-fl.profiles.<name>]`), and every site-YAML key once, by the
docstring under its dataclass field (`sites.config`, `sites.site_settings`,
`sites.split_settings`). This module renders both into one page, so the page cannot drift from the
code: `tests/test_config_reference.py` fails when the committed page differs from what this
renders. Regenerate with `python -m server.config_reference`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
import tomllib
import typing
from pathlib import Path

from client.run_config import RUN_CONFIG_KEYS
from sites import config as site_config
from sites.split_settings import SplitByColumn, SplitByDate, SplitByPatient

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PAGE = ROOT / "docs" / "configuration.md"
RUN_CONFIG_TABLE = "[tool.flwr.app.config]"

_NOT_YAML = {"source", "root"}
"""Dataclass fields the loader fills in, not keys a YAML file sets."""

_SPLIT_BY = {SplitByColumn: "column", SplitByPatient: "patient", SplitByDate: "date"}
"""`data.split.by`: which rule a split mapping is read into."""


# -----------------------------------------------------------------------------------------------
# Run config: pyproject.toml, a comment above each key.
# -----------------------------------------------------------------------------------------------


def run_config_keys(pyproject: Path = PYPROJECT) -> list[tuple[str, object, str]]:
    """(key, default, meaning) for every run-config key, in file order.

    The meaning is the comment block directly above the key. Every key has its own, even in a
    group (a comment shared by the keys below it would be read as documenting only the first).
    """
    text = pyproject.read_text(encoding="utf-8")
    defaults = tomllib.loads(text)["tool"]["flwr"]["app"]["config"]
    rows: list[tuple[str, object, str]] = []
    inside, comment = False, []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped == RUN_CONFIG_TABLE
            comment = []
            continue
        if not inside:
            continue
        if not stripped:
            comment = []
        elif stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
        else:
            key = stripped.split("=", 1)[0].strip()
            meaning = " ".join(comment)
            if not meaning:
                raise ValueError(f"{pyproject}:{number}: run-config key `{key}` has no comment "
                                 "above it; expected one saying what it does")
            rows.append((key, defaults[key], meaning))
            comment = []
    return rows


PROFILE_HEADER = "[tool.lang1-fl.profiles."
"""How each run profile's table starts (client/run_profiles.py)."""


def run_profile_docs(pyproject: Path = PYPROJECT) -> list[tuple[str, dict[str, object], str]]:
    """(name, values, meaning) for every run profile, in file order; the meaning is the comment
    block directly above its table header, which every profile has."""
    text = pyproject.read_text(encoding="utf-8")
    tables = tomllib.loads(text).get("tool", {}).get("lang1-fl", {}).get("profiles", {})
    rows: list[tuple[str, dict[str, object], str]] = []
    comment: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(PROFILE_HEADER) and stripped.endswith("]"):
            name = stripped[len(PROFILE_HEADER):-1].strip('"')
            if not comment:
                raise ValueError(f"{pyproject}:{number}: run profile `{name}` has no comment "
                                 "above it; expected one saying what it is for")
            rows.append((name, dict(tables[name]), " ".join(comment)))
        comment = (comment + [stripped.lstrip("#").strip()] if stripped.startswith("#")
                   else [])
    return rows


def _run_config_type(key: str) -> str:
    """The key's one type and bound, as `client.run_config` enforces them on every reader."""
    kind, bound = RUN_CONFIG_KEYS[key]
    name = {bool: "true/false", int: "integer", float: "number", str: "text"}[kind]
    return name if bound == "any" else f"{name} {bound}"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


# -----------------------------------------------------------------------------------------------
# Site YAML: the dataclasses of `sites.config` and `sites.site_settings`, a docstring per field.
# -----------------------------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring: the string literal right under its annotation in the class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs: dict[str, str] = {}
    for statement, following in zip(body, body[1:] + [None]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def site_yaml_keys() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, meaning) for every key of a site YAML, nested keys dotted."""
    rows: list[tuple[str, str, str, str]] = []
    _walk(site_config.SiteConfig, "", rows)
    return rows


def consortium_yaml_keys() -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    _walk(site_config.ConsortiumConfig, "", rows)
    return rows


def _walk(cls: type, prefix: str, rows: list[tuple[str, str, str, str]]) -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    annotations = {f.name: f.type for f in dataclasses.fields(cls)}
    for field in dataclasses.fields(cls):
        if field.name in _NOT_YAML:
            continue
        key = prefix + field.name
        if key == "sites":
            rows.append((key, "list", "required", docs[field.name]))
            continue
        if field.name not in docs:
            raise ValueError(f"{cls.__module__}.{cls.__name__}.{field.name} has no docstring; "
                             "expected one saying what the key means (it is the reference)")
        nested = _dataclasses_in(hints[field.name])
        kind = "mapping" if nested else _type_name(hints[field.name], str(annotations[field.name]))
        rows.append((key, kind, _default(field), docs[field.name]))
        if len(nested) == 1:
            _walk(nested[0], key + ".", rows)
        for rule in nested if len(nested) > 1 else ():
            by = _SPLIT_BY[rule]
            rows.append((f"{key}.by", f"`{by}`", "", _class_doc(rule)))
            _walk(rule, f"{key}.", rows)


def _dataclasses_in(hint: object) -> list[type]:
    """The settings classes a key's value is read into: one, or several to choose from."""
    return [c for c in (hint, *typing.get_args(hint))
            if isinstance(c, type) and dataclasses.is_dataclass(c)]


def _type_name(hint: object, written: str) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(hint))
    if args and any(typing.get_origin(a) is typing.Literal for a in args):
        return _type_name(args[0], written)
    written = written.replace(" | None", "").replace("None | ", "")
    return _FRIENDLY.get(written, "mapping" if written.startswith("Mapping") else written)


_FRIENDLY = {"str": "text", "int": "integer", "float": "number", "bool": "true/false",
             "Path": "path", "dt.date": "date", "tuple[str, ...]": "list of text",
             "tuple[float, float, float]": "list of 3 numbers"}
"""How a Python annotation reads to someone writing YAML."""


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        if field.default is None:
            return "absent"
        if dataclasses.is_dataclass(field.default):
            return "(the defaults below)"
        value = field.default
        return f"`{str(value).lower() if isinstance(value, bool) else value}`"
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return "empty"
    return "required"


def _class_doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())


# -----------------------------------------------------------------------------------------------
# The page.
# -----------------------------------------------------------------------------------------------


def render() -> str:
    """The whole of `docs/configuration.md`."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m server.config_reference` from pyproject.toml and the site",
        "     settings' field docstrings; edit those, not this page. -->",
        "",
        "## Run config (`pyproject.toml`, `[tool.flwr.app.config]`)",
        "",
        "The coordinator's settings. Override any of them for one run with",
        "`lang1-fl run --set key=value` (or `flwr run . --run-config 'key=value'`).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, default, meaning in run_config_keys():
        lines.append(f"| `{key}` | {_run_config_type(key)} | `{_toml_value(default)}` | "
                     f"{_cell(meaning)} |")
    lines += [
        "",
        "## Run profiles (`pyproject.toml`, `[tool.lang1-fl.profiles.<name>]`)",
        "",
        "Named sets of the run-config values above. `--profile NAME` (`lang1-fl run`,",
        "`experiment transfer`, `privacy forecast`, `privacy audit`, `sites check`) applies one",
        "over the defaults; `--set` and the command's own flags win over it. The run config",
        "records its name under `profile`.",
        "",
        "| profile | sets | meaning |",
        "|---|---|---|",
    ]
    for name, values, meaning in run_profile_docs():
        sets = ", ".join(f"`{key} = {_toml_value(value)}`" for key, value in values.items())
        lines.append(f"| `{name}` | {sets} | {_cell(meaning)} |")
    lines += [
        "",
        "## Site YAML",
        "",
        "One file per hospital (`lang1-fl sites check SITE.yaml` checks it). Nested keys are",
        "written dotted here: `training.batch_size` is `batch_size` under `training:`.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{k}` | {t} | {d} | {_cell(m)} |" for k, t, d, m in site_yaml_keys()]
    lines += [
        "",
        "## Consortium YAML",
        "",
        "The coordinator's list of sites (`sites/consortia/default.yaml` is the shipped one).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{k}` | {t} | {d} | {_cell(m)} |" for k, t, d, m in consortium_yaml_keys()]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()

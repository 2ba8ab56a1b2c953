"""The error messages of site and consortium YAML: every one names the file and the full key path.

Shared by the site parser (`sites.config`) and the data-source parser (`sites.data_source_yaml`),
so a hospital sees one shape of message whichever block is wrong, e.g.
"consortia/x.yaml: `sites[2].data.split.by` is 'week'; expected 'column', 'patient' or 'date'".
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from sites.field_checks import FieldError, InvalidSiteConfig


def read_yaml(file: Path, *, expected: str) -> object:
    if not file.is_file():
        raise InvalidSiteConfig(f"{display_path(file)}: does not exist; expected {expected}")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise InvalidSiteConfig(
            f"{display_path(file)}: does not parse as YAML ({problem}{line}); expected {expected}"
        ) from None
    if raw is None:
        raise InvalidSiteConfig(f"{display_path(file)}: is empty; expected {expected}")
    return raw


def check_keys(raw: object, allowed: tuple[str, ...], *, file: Path, key: str) -> None:
    if not isinstance(raw, dict):
        where = f"`{key}` is {raw!r}" if key else f"the top level is a {type(raw).__name__}"
        raise InvalidSiteConfig(
            f"{display_path(file)}: {where}; expected a mapping with keys {', '.join(allowed)}")
    for name in raw:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise InvalidSiteConfig(
                f"{display_path(file)}: `{join_key(key, str(name))}` is not a known key; expected one of "
                f"{', '.join(allowed)}{hint}")


def get_key(raw: dict, name: str, *, file: Path, key: str, expected: str) -> object:
    if name not in raw or raw[name] is None:
        raise InvalidSiteConfig(f"{display_path(file)}: `{join_key(key, name)}` is missing; expected "
                                f"{expected}")
    return raw[name]


class located:
    """Context manager re-raising a dataclass field error with the file and full key path."""

    def __init__(self, file: Path, key: str) -> None:
        self.file, self.key = file, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, FieldError):
            raise InvalidSiteConfig(
                f"{display_path(self.file)}: `{join_key(self.key, error.key)}` is {error.value!r}; "
                f"expected {error.expected}") from None
        return False


def join_key(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def display_path(path: Path | None) -> str:
    """A path as the user most likely wrote it: relative to the working directory when inside it."""
    if path is None:
        return "<config>"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


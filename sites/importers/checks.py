"""Checks shared by the MIMIC-IV and MEDS importers: their raw YAML options, their bad-data errors.

The options arrive as the raw `data.options` mapping of a site YAML; each importer parses them once
into a frozen dataclass with these helpers, so an unknown key or a value of the wrong type is
reported as "site.yaml: `data.options.skip_elective` is 'yes'; expected true or false" before any
file is read. Problems in the data itself raise `sites.encounter_table.InvalidSiteData`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TypeVar

from sites.encounter_table import InvalidSiteData
from sites.field_checks import FieldError, InvalidSiteConfig

OPTIONS_KEY = "data.options"
"""Where the options sit in a site YAML, for error messages."""

T = TypeVar("T")


def options_error(where: str, key: str, value: object, expected: str) -> InvalidSiteConfig:
    """"WHERE: `data.options.KEY` is VALUE; expected EXPECTED" (`key` relative to the options)."""
    return InvalidSiteConfig(f"{where}: `{OPTIONS_KEY}.{key}` is {value!r}; expected {expected}")


def check_mapping(raw: object, *, where: str, key: str, allowed: tuple[str, ...]) -> dict:
    """`raw` as a dict whose keys are all in `allowed` (`key` = "" for the options themselves)."""
    shown = f"{OPTIONS_KEY}.{key}" if key else OPTIONS_KEY
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidSiteConfig(f"{where}: `{shown}` is {raw!r}; expected a mapping with keys "
                                f"{', '.join(allowed)}")
    for name in raw:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidSiteConfig(f"{where}: `{shown}` has unknown key {name!r}{hint}; expected "
                                    f"some of {', '.join(allowed)}")
    return dict(raw)


def typed(value: object, *, where: str, key: str, ok: Callable[[object], bool],
          expected: str) -> object:
    """`value` if `ok(value)`, else the options error for `key`."""
    if not ok(value):
        raise options_error(where, key, value, expected)
    return value


def is_bool(value: object) -> bool:
    return isinstance(value, bool)


def is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def build(factory: Callable[..., T], fields: Mapping[str, object], *, where: str) -> T:
    """`factory(**fields)`, its `__post_init__` field errors reported under `data.options`."""
    try:
        return factory(**fields)
    except FieldError as error:
        raise options_error(where, error.key, error.value, error.expected) from None


def data_error(message: str) -> InvalidSiteData:
    """A `sites.encounter_table.InvalidSiteData` with `message`."""
    return InvalidSiteData(message)

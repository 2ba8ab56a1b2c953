"""The field rules every settings dataclass of a site YAML shares, and the error they raise.

A dataclass checks its own values in `__post_init__` with `require`, so settings built in code are
checked as strictly as settings read from YAML; the YAML loader (`sites.config`) catches
`FieldError` and adds the file and the key path.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping


class InvalidSiteConfig(ValueError):
    """A site or consortium YAML is missing, malformed, or breaks a rule; the message says where."""


class FieldError(InvalidSiteConfig):
    """A field rule broken in `__post_init__`; the loader adds the file and the key path."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"`{key}` is {value!r}; expected {expected}")
        self.key, self.value, self.expected = key, value, expected


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise FieldError(key, value, expected)


def did_you_mean(value: object, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def frozen_copy(mapping: Mapping) -> dict:
    """A copy, so the caller's dict cannot change the settings later (a plain dict, unlike a
    mappingproxy, pickles and deep-copies)."""
    return dict(mapping)


def is_name(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""

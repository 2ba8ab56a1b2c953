"""The `data` block of a site YAML: where the table is, its format, the hospital's column names and
raw labels, importer options, and the split rule (the dataset's own column, by patient, by date).

Parsed into `sites.site_settings.DataSource` and its `SplitRule`; value rules live in those
dataclasses, this module adds the file and key path to their messages.
"""

from __future__ import annotations

from pathlib import Path

from sites.site_settings import (
    SPLIT_VALUE_KEYS,
    DataSource,
    InvalidSiteConfig,
    SplitByColumn,
    SplitByDate,
    SplitByPatient,
    SplitRule,
    TableFormat,
)
from sites.tasks import SPLITS
from sites.yaml_keys import check_keys, display_path, get_key, join_key, located

_SUFFIX_FORMATS: dict[str, TableFormat] = {
    ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
}


def data_source(raw: dict, *, file: Path, key: str, base: Path) -> DataSource:
    """The site mapping's `data` block; a relative `path` resolves against `base` (the data root,
    else the YAML's folder), and `format` may be left to the file's suffix."""
    data = get_key(raw, "data", file=file, key=key, expected="a mapping with `path` and `format`")
    key = join_key(key, "data")
    check_keys(data, _DATA_KEYS, file=file, key=key)
    path = get_key(data, "path", file=file, key=key, expected="the table's path")
    if not isinstance(path, str) or not path.strip():
        raise InvalidSiteConfig(f"{display_path(file)}: `{key}.path` is {path!r}; expected a file path")
    resolved = Path(path).expanduser()
    resolved = (resolved if resolved.is_absolute() else base / resolved).resolve()
    fmt = data.get("format", _SUFFIX_FORMATS.get(resolved.suffix.lower()))
    if fmt is None:
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.format` is missing and the suffix of {path!r} says nothing; "
            "expected 'parquet', 'jsonl' or 'csv' (or 'mimic-iv' / 'meds' for a dataset folder)")
    if fmt == "mimic-iv" and data.get("split") is None:
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.split` is missing; expected a split rule by patient or "
            "by date (MIMIC-IV has no split column), e.g. {by: patient, seed: 7}")
    fields = {name: data[name] for name in ("columns", "raw_labels", "options") if name in data}
    with located(file, key):
        return DataSource(path=resolved, format=fmt, **fields,
                          split=_split_rule(data.get("split"), file=file, key=join_key(key, "split")))


_DATA_KEYS = ("path", "format", "columns", "raw_labels", "split", "options")
_SPLIT_KEYS: dict[str, tuple[str, ...]] = {
    "column": ("by", "column", "values"),
    "patient": ("by", "seed", "fractions"),
    "date": ("by", "column", "test_from", "validation_from", "straddling"),
}


def _split_rule(raw: object, *, file: Path, key: str) -> SplitRule | None:
    """`data.split`: `by` column (the table's own split column), patient (seeded) or date
    (temporal). `by` may be left out: date when `test_from` is given, column when `column` is,
    patient otherwise."""
    if raw is None:
        return None
    check_keys(raw, tuple(dict.fromkeys(k for keys in _SPLIT_KEYS.values() for k in keys)),
                file=file, key=key)
    assert isinstance(raw, dict)
    by = raw.get("by", "date" if "test_from" in raw else "column" if "column" in raw else "patient")
    if by not in _SPLIT_KEYS:
        raise InvalidSiteConfig(f"{display_path(file)}: `{key}.by` is {by!r}; expected 'column', "
                                "'patient' or 'date'")
    check_keys(raw, _SPLIT_KEYS[by], file=file, key=key)
    fields = {k: v for k, v in raw.items() if k != "by"}
    if by == "patient":
        get_key(raw, "seed", file=file, key=key, expected="an integer >= 0 seeding the split")
        fractions = fields.get("fractions", {})
        check_keys(fractions, SPLITS, file=file, key=join_key(key, "fractions"))
        defaults = dict(zip(SPLITS, SplitByPatient.__dataclass_fields__["fractions"].default))
        fields["fractions"] = tuple({**defaults, **fractions}[s] for s in SPLITS)
    elif by == "date":
        get_key(raw, "column", file=file, key=key, expected="the table's date column")
        get_key(raw, "test_from", file=file, key=key, expected="the first date of the test split")
    elif "values" in fields:
        check_keys(fields["values"], SPLIT_VALUE_KEYS, file=file, key=join_key(key, "values"))
        fields["values"] = {split: _split_values(theirs, file=file, key=f"{key}.values.{split}")
                            for split, theirs in fields["values"].items()}
    cls = {"column": SplitByColumn, "patient": SplitByPatient, "date": SplitByDate}[by]
    with located(file, key):
        return cls(**fields)


def _split_values(raw: object, *, file: Path, key: str) -> tuple[str, ...]:
    """One split's values of the table's split column, as text (YAML may read `1` as a number)."""
    values = raw if isinstance(raw, list) else [raw]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise InvalidSiteConfig(
                f"{display_path(file)}: `{key}` is {raw!r}; expected a value or a list of values "
                "of the split column (text or integers; quote yes/no/true/false)")
    return tuple(str(value) for value in values)

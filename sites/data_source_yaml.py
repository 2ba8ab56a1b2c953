"""The `data` block of a site YAML: where the table is, its format, the hospital's column names and
raw labels, importer options, and the split rule (the dataset's own column, by patient, by date).

Parsed into `sites.site_settings.DataSource` and its `SplitRule`; value rules live in those
dataclasses, this module adds the file and key path to their messages.
"""

from __future__ import annotations

from pathlib import Path

from sites.data_root import DataRoot, is_outside
from sites.field_checks import InvalidSiteConfig
from sites.site_settings import DataSource, TableFormat
from sites.split_settings import (
    SPLIT_VALUE_KEYS,
    SplitByColumn,
    SplitByDate,
    SplitByPatient,
    SplitRule,
)
from sites.tasks import NOTE_COLUMNS, SPLITS
from sites.yaml_keys import check_keys, display_path, get_key, join_key, located

_SUFFIX_FORMATS: dict[str, TableFormat] = {
    ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
    ".tsv": "csv",
}
NOTE_SHORTHAND = "note"
"""`data.columns.note: TEXT` maps one note column to both note types (a hospital with one note per
encounter): every task reads it."""


def data_source(raw: dict, *, file: Path, key: str, base: DataRoot) -> DataSource:
    """The site mapping's `data` block; a relative `path` resolves against `base` (the data root
    of `sites.data_root`'s rule) and may not leave it unless `allow_outside_data_dir`; `format`
    (and a tab `delimiter` for `.tsv`) may be left to the file's suffix."""
    data = get_key(raw, "data", file=file, key=key, expected="a mapping with `path` and `format`")
    key = join_key(key, "data")
    check_keys(data, _DATA_KEYS, file=file, key=key)
    path = get_key(data, "path", file=file, key=key, expected="the table's path")
    if not isinstance(path, str) or not path.strip():
        raise InvalidSiteConfig(f"{display_path(file)}: `{key}.path` is {path!r}; expected a file path")
    allow = data.get("allow_outside_data_dir", False)
    if not isinstance(allow, bool):
        raise InvalidSiteConfig(f"{display_path(file)}: `{key}.allow_outside_data_dir` is "
                                f"{allow!r}; expected true or false")
    resolved = _resolved(path, base, allow=allow, file=file, key=key)
    fmt = data.get("format", _SUFFIX_FORMATS.get(resolved.suffix.lower()))
    if fmt is None:
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.format` is missing and the suffix of {path!r} says nothing; "
            "expected 'parquet', 'jsonl' or 'csv' (or 'mimic-iv' / 'meds' for a dataset folder)")
    if fmt == "mimic-iv" and data.get("split") is None:
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.split` is missing; expected a split rule by patient or "
            "by date (MIMIC-IV has no split column), e.g. {by: patient, seed: 7}")
    fields = {name: data[name] for name in ("columns", "raw_labels", "options", "delimiter")
              if name in data}
    if "columns" in data:
        fields["columns"] = _columns(data["columns"], file=file, key=join_key(key, "columns"))
    if resolved.suffix.lower() == ".tsv" and fmt == "csv":
        fields.setdefault("delimiter", "\t")
    if "label_values" in data:
        fields["label_values"] = _label_values(data["label_values"], file=file,
                                               key=join_key(key, "label_values"))
    with located(file, key):
        return DataSource(path=resolved, format=fmt, **fields, allow_outside_data_dir=allow,
                          root=base,
                          split=_split_rule(data.get("split"), file=file, key=join_key(key, "split")))


def _resolved(path: str, base: DataRoot, *, allow: bool, file: Path, key: str) -> Path:
    """`path` made absolute against `base`, symlinks followed; a loop, or a relative path that
    leaves `base` without `allow`, is an error naming the key."""
    written = Path(path).expanduser()
    try:
        resolved = (written if written.is_absolute() else base.folder / written).resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python 3.11's "Symlink loop"
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.path` is {path!r}, a symlink loop; expected a file or "
            "folder, or a link that ends at one") from None
    if not written.is_absolute() and not allow and is_outside(resolved, base.folder):
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.path` is {path!r}, which leads outside its data folder "
            f"(to {resolved}); {base.explain()}; expected a path inside it (or set "
            f"`{key}.allow_outside_data_dir: true` to read it there)")
    return resolved


def _columns(raw: object, *, file: Path, key: str) -> object:
    """`data.columns` with the `note` shorthand expanded into both note types."""
    if not isinstance(raw, dict) or NOTE_SHORTHAND not in raw:
        return raw
    both = [name for name in NOTE_COLUMNS.values() if name in raw]
    if both:
        raise InvalidSiteConfig(
            f"{display_path(file)}: `{key}.{NOTE_SHORTHAND}` and `{key}.{both[0]}` are both set; "
            f"expected `{NOTE_SHORTHAND}` (one column every task reads) or the note types, not "
            "both")
    columns = {name: value for name, value in raw.items() if name != NOTE_SHORTHAND}
    return {**columns, **{name: raw[NOTE_SHORTHAND] for name in NOTE_COLUMNS.values()}}


def _label_values(raw: object, *, file: Path, key: str) -> dict:
    """`data.label_values`: task -> class name -> a value or list of values, as text."""
    if not isinstance(raw, dict):
        raise InvalidSiteConfig(f"{display_path(file)}: `{key}` is {raw!r}; expected a mapping of "
                                "task -> class name -> the table's values, e.g. {mortality: "
                                "{yes: Expired, no: [Alive, Home]}}")
    mapped: dict = {}
    for task, classes in raw.items():
        if not isinstance(classes, dict):
            mapped[task] = classes  # the dataclass names the key and what was expected
            continue
        # YAML 1.1 reads an unquoted `yes:` / `no:` key as a boolean: our class names mean text
        mapped[task] = {_YAML_BOOLEANS.get(name, name) if isinstance(name, bool) else name:
                        _split_values(theirs, file=file, key=f"{key}.{task}.{name}")
                        for name, theirs in classes.items()}
    return mapped


_YAML_BOOLEANS = {True: "yes", False: "no"}

_DATA_KEYS = ("path", "format", "columns", "raw_labels", "split", "options", "delimiter",
              "label_values", "allow_outside_data_dir")
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
    """One split's (or class's) values of the table's column, as text (YAML may read `1` as a
    number)."""
    values = raw if isinstance(raw, list) else [raw]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise InvalidSiteConfig(
                f"{display_path(file)}: `{key}` is {raw!r}; expected a value or a list of values "
                "of the column (text or integers; quote yes/no/true/false)")
    return tuple(str(value) for value in values)

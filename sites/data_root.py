"""Where a site's relative `data.path` resolves: one rule for every command that reads a site YAML.

`lang1-fl sites check`, `sites generate`, `run`, `experiment transfer`, `privacy forecast` and
`privacy audit`, and the Flower apps they start, all resolve through `data_root`, so a site that
checks clean is read from the same file by the run. The rule:

1. `--data-dir` (the run config's `data-dir`) when one is given;
2. else `./lang1-fl-data` for a YAML file shipped inside the package (the consortia in
   sites/consortia/ and their site files: their synthetic data is generated there);
3. else the folder of the YAML file that names the path (a hospital keeps its `site.yaml` next to
   its extract).

A relative path must stay inside its data root once symlinks are followed (`../`, or a link to a
system file, is refused) unless the site says `data.allow_outside_data_dir: true`; an absolute
path is taken as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR: Path = Path("lang1-fl-data")
"""The data folder of the consortia shipped with the package (relative to the working directory):
`lang1-fl sites generate` writes their synthetic hospitals there."""

SHIPPED_FOLDER: Path = Path(__file__).resolve().parent / "consortia"
"""Where the package's own consortia and site YAML files live."""


DATA_DIR_HELP = ("folder relative `data.path`s resolve against (default: the folder of the YAML "
                 "that names them; ./lang1-fl-data for the shipped consortia)")
"""`--data-dir`'s help, the same for every command that reads a site YAML."""


@dataclass(frozen=True)
class DataRoot:
    """The folder a site's relative data path resolved against, and which part of the rule chose
    it (said in every error about a missing or escaping table)."""

    folder: Path
    why: str
    """E.g. "the --data-dir" or "the folder of site.yaml"."""

    def explain(self) -> str:
        """The rule as applied, with how to change it, for one-line error messages."""
        return (f"relative `data.path` resolves against {self.folder} ({self.why}); pass "
                "--data-dir FOLDER to resolve it against another folder")


def is_shipped(yaml_file: Path) -> bool:
    """True for a YAML file that ships inside the package (sites/consortia/)."""
    return Path(yaml_file).resolve().is_relative_to(SHIPPED_FOLDER)


def data_root(data_dir: Path | str | None, yaml_file: Path) -> DataRoot:
    """The folder relative data paths named in `yaml_file` resolve against (the module's rule)."""
    if data_dir is not None and str(data_dir) != "":
        return DataRoot(Path(data_dir).expanduser().resolve(), "the --data-dir")
    if is_shipped(yaml_file):
        return DataRoot(DEFAULT_DATA_DIR.resolve(),
                        f"the data folder of the shipped consortia, ./{DEFAULT_DATA_DIR}")
    return DataRoot(Path(yaml_file).resolve().parent, f"the folder of {Path(yaml_file).name}")


def run_data_dir(data_dir: Path | None, consortium_file: Path) -> Path | None:
    """What a command that starts Flower writes as the run config's `data-dir`: the given folder
    or the shipped consortia's, made absolute here (the Flower processes may run elsewhere), or
    None ("") to let each YAML file's folder apply."""
    if data_dir is None and not is_shipped(consortium_file):
        return None
    return data_root(data_dir, consortium_file).folder


def is_outside(path: Path, root: Path) -> bool:
    """True when `path`, symlinks followed, is not inside `root` (symlinks followed too)."""
    return not path.resolve().is_relative_to(root.resolve())

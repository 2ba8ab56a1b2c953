"""`model.json`: what an exported adapter folder needs to be used without the run that made it.

`client.model.save_adapter` writes it next to peft's `adapter_config.json` and
`adapter_model.safetensors` (and `heads.safetensors` or the letter prompts): the base as the run
config named it (`all-MiniLM-L6-v2`, `smollm2-135m` or a path), the note length, the resolved
scoring (`head` or `letters`), the LoRA settings and seed the model was built with, and per task, in
the model's order, the note column it reads and its class names. `lang1-fl score`
(client/score.py) rebuilds the model from it; a person reads it to know what the model expects.
Plain peft ignores the file: `PeftModel.from_pretrained(base, folder)` still works.

The manifest is checked when read, against this version's tasks: a folder whose tasks, notes or
classes differ from `sites.tasks` is refused rather than scored under the wrong class names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sites.tasks import NOTE_COLUMNS, TASKS, resolve_tasks

MANIFEST_FILE = "model.json"
FORMAT = "lang1-fl-model"
VERSION = 1
SCORINGS_RESOLVED = ("head", "letters")


class InvalidExportedModel(ValueError):
    """A folder is not a usable exported model (no manifest, or one this version cannot read)."""


def probability_column(task: str, class_name: str) -> str:
    """The scored table's column of one class probability: `<task>.p_<class>`, e.g.
    `mortality.p_yes`, `los.p_0-2`, `comorbidity.p_>7`."""
    return f"{task}.p_{class_name}"


@dataclass(frozen=True)
class ModelManifest:
    """The contents of `model.json` (see the module docstring)."""

    base: str
    """The base as the run config gave it: a named base or a path (on the coordinator's machine)."""
    max_length: int
    """Tokens kept from the start of each note (under `letters`: note and question together)."""
    scoring: str
    """`head` or `letters`, resolved (never `auto`)."""
    tasks: tuple[str, ...]
    """The model's tasks, in its order."""
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    lora_target_modules: tuple[str, ...] | None
    seed: int
    lora_layers: int = 0
    """Top transformer layers adapted (0 = all); a manifest written before it existed adapted all."""

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS_RESOLVED:
            raise InvalidExportedModel(f"`scoring` is {self.scoring!r}; expected 'head' or "
                                       "'letters'")

    @property
    def output_columns(self) -> list[str]:
        """The probability columns `lang1-fl score` writes, task by task, class by class."""
        return [probability_column(t, c) for t in self.tasks for c in TASKS[t].class_names]

    def to_json(self) -> dict[str, Any]:
        lora = {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
                "target_modules": None if self.lora_target_modules is None
                else list(self.lora_target_modules), "layers": self.lora_layers}
        tasks = [{"name": t, "note": TASKS[t].note, "note_column": NOTE_COLUMNS[TASKS[t].note],
                  "class_names": list(TASKS[t].class_names),
                  "output_columns": [probability_column(t, c) for c in TASKS[t].class_names]}
                 for t in self.tasks]
        return {"format": FORMAT, "version": VERSION, "base": self.base,
                "max_length": self.max_length, "scoring": self.scoring, "seed": self.seed,
                "lora": lora, "tasks": tasks}


def write_manifest(manifest: ModelManifest, folder: Path) -> Path:
    """Write `folder/model.json`; returns its path."""
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return path


def read_manifest(folder: Path) -> ModelManifest:
    """The manifest of an exported adapter folder; raises `InvalidExportedModel` saying what is
    missing or does not match this version's tasks."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise InvalidExportedModel(
            f"{folder}: has no {MANIFEST_FILE}; expected a run folder (runs/<run>) or its "
            "adapter/ folder written by `lang1-fl run` (folders saved before model.json existed "
            "cannot be scored)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidExportedModel(f"{path}: cannot be read as JSON ({error})") from None
    try:
        return _manifest(raw)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, InvalidExportedModel):
            raise InvalidExportedModel(f"{path}: {error}") from None
        reason = f"key {error}" if isinstance(error, KeyError) else str(error)
        raise InvalidExportedModel(f"{path}: malformed ({reason}); expected the manifest "
                                   "`client.model.save_adapter` writes") from None


def _manifest(raw: dict[str, Any]) -> ModelManifest:
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise InvalidExportedModel(f"`format`/`version` are {raw.get('format')!r}/"
                                   f"{raw.get('version')!r}; expected {FORMAT!r}/{VERSION}")
    entries = raw["tasks"]
    tasks = resolve_tasks([e["name"] for e in entries], where="`tasks`")
    for entry in entries:
        spec = TASKS[entry["name"]]
        if (entry["note_column"], tuple(entry["class_names"])) != (NOTE_COLUMNS[spec.note],
                                                                   spec.class_names):
            raise InvalidExportedModel(
                f"task `{spec.name}` reads `{entry['note_column']}` with classes "
                f"{entry['class_names']}; this version's reads `{NOTE_COLUMNS[spec.note]}` with "
                f"{list(spec.class_names)}: expected a model exported by a matching version")
    lora = raw["lora"]
    targets = lora["target_modules"]
    return ModelManifest(
        base=str(raw["base"]), max_length=int(raw["max_length"]), scoring=raw["scoring"],
        tasks=tasks, lora_r=int(lora["r"]), lora_alpha=float(lora["alpha"]),
        lora_dropout=float(lora["dropout"]),
        lora_target_modules=None if targets is None else tuple(str(t) for t in targets),
        seed=int(raw["seed"]), lora_layers=int(lora.get("layers", 0)))

"""`README.md` of an exported adapter folder: the model card a person reads before using it.

peft's `save_pretrained` writes a blank template ("[More Information Needed]" under every heading)
that names the base by the absolute path it was loaded from inside one machine's virtualenv.
`client.adapter_export.save_adapter` replaces it with this card, rendered from the folder's manifest
(client/model_manifest.py): the base as the run config named it, the note length, each task's
note, classes and output columns, and how to use the folder. The coordinator then adds what only
the run knows (`server.report.model_card`): the reported round, its AUROCs, and whether the data
was synthetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from client.base_model import NAMED_BASES
from client.model_manifest import ModelManifest
from sites.tasks import NOTE_COLUMNS, TASKS

CARD_FILE = "README.md"


def _base_line(base: str) -> str:
    if base in NAMED_BASES:
        return (f"`{base}`, a named base of lang1-fl: `lang1-fl score` finds it in its package on "
                "any machine where lang1-fl is installed.")
    return (f"`{base}`, the folder or file the run was given; on another machine pass the same "
            "model to `lang1-fl score --base`.")


def _task_table(manifest: ModelManifest) -> list[str]:
    lines = ["| task | what it predicts | note it reads (column) | classes | output columns |",
             "|---|---|---|---|---|"]
    for name in manifest.tasks:
        task = TASKS[name]
        columns = ", ".join(f"`{name}.p_{c}`" for c in task.class_names)
        lines.append(f"| {name} | {task.description} | {task.note} (`{NOTE_COLUMNS[task.note]}`) "
                     f"| {', '.join(task.class_names)} | {columns} |")
    return lines


def model_card(manifest: ModelManifest, *, results: Sequence[str] = (),
               data_note: str | None = None) -> str:
    """The card's Markdown. `results`: lines of the run's results section (none: the folder was
    saved outside a run); `data_note`: a warning shown under the title (synthetic data)."""
    scoring = ("one linear head per task on the pooled note" if manifest.scoring == "head" else
               "each task as a multiple-choice question, scored by the answer letters' logits")
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {manifest.base}",
        "tags: [lora, peft, lang1-fl, federated-learning, clinical-notes]",
        "---",
        "",
        f"# lang1-fl adapter: {', '.join(manifest.tasks)}",
        "",
    ]
    if data_note:
        lines += [f"**{data_note}**", ""]
    lines += [
        "A LoRA adapter trained by federated learning across hospitals with lang1-fl; it predicts "
        "from the start of a clinical note.",
        "",
        "## Model",
        "",
        f"- Base: {_base_line(manifest.base)}",
        f"- Input: the first {manifest.max_length} tokens of the note"
        + (" (note and question together)" if manifest.scoring == "letters" else "") + ".",
        f"- Scoring: {scoring} (`{manifest.scoring}`).",
        f"- LoRA: r={manifest.lora_r}, alpha={manifest.lora_alpha:g}, dropout="
        f"{manifest.lora_dropout:g}, target modules "
        f"{', '.join(manifest.lora_target_modules) if manifest.lora_target_modules else 'peft default'}"
        f"{f' of the top {manifest.lora_layers} layers' if manifest.lora_layers else ''}"
        f"; seed {manifest.seed}.",
        "",
        "## Tasks",
        "",
        *_task_table(manifest),
        "",
    ]
    if results:
        lines += ["## Results", "", *results, ""]
    lines += [
        "## Use",
        "",
        "```",
        "lang1-fl score THIS_FOLDER encounters.parquet --out scores.parquet",
        "```",
        "",
        "writes each encounter's class probabilities (the output columns above). "
        "`model.json` holds everything above in machine-readable form; "
        "`PeftModel.from_pretrained(base_model, THIS_FOLDER)` loads the adapter alone (the heads "
        "are in `heads.safetensors`, or the answer prompts in their own file).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(manifest: ModelManifest, folder: Path, **card) -> Path:
    """Write (or replace) `folder/README.md`; returns its path."""
    path = Path(folder) / CARD_FILE
    path.write_text(model_card(manifest, **card))
    return path

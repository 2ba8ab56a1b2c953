"""`lang1-fl score`: apply a finished run's model to a table of new encounters, at the hospital.

A run exports the reported round's model as `runs/<run>/adapter/`: the peft adapter, the task heads
(`heads.safetensors`) or the letter prompts, and `model.json` (client/model_manifest.py: base, note
length, scoring, LoRA settings, tasks with their note columns and classes). This command rebuilds
that model from the folder alone — the base resolved here (`client.base_model.resolve_base_path`;
`--base` when it lives elsewhere than on the coordinator's machine), built by `build_model` with
the same LoRA settings and seed, the exported weights loaded by `load_trainable_state` — reads the
table (a site YAML's data, column mapping included, or a table in our own layout), encodes it as
training did (`client.data.encode_split`) and scores it as evaluation does
(`client.evaluate.predict`).

The output has one row per encounter, in the input's order: `encounter_id`, `patient_id`, then per
task, in the model's order, one column per class with its softmax probability, named
`<task>.p_<class>` (`mortality.p_no`, `mortality.p_yes`, `los.p_0-2`, …, `comorbidity.p_>7`;
`client.model_manifest.probability_column`). Each task's columns sum to 1. Labels and the split
column are not needed: every encounter of the table is scored. The file is written to a temporary
name and renamed into place, so a reader never sees half of it; an existing file is kept unless
`--overwrite`.

Heavy imports (torch, transformers, peft) happen inside the functions, so `lang1-fl --help`
answers at once.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from client.model_manifest import MANIFEST_FILE, InvalidExportedModel, ModelManifest, read_manifest
from sites.config import PRECISIONS

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from client.model import TaskModel

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("parquet", "csv", "jsonl")
SITE_SUFFIXES = (".yaml", ".yml")


class InvalidScoringInput(ValueError):
    """What `lang1-fl score` was given cannot be scored or written; the message says why."""


def add_score_parser(commands: argparse._SubParsersAction) -> None:
    """`lang1-fl score RUN_OR_ADAPTER_DIR TABLE --out FILE`."""
    score = commands.add_parser(
        "score", help="hospital: apply a finished run's model to a table of new encounters",
        description="Write each encounter's class probabilities per task (columns "
        "`<task>.p_<class>`, e.g. `mortality.p_yes`) with its encounter_id and patient_id. "
        "Labels are not needed.")
    score.add_argument("model", type=Path, metavar="RUN_OR_ADAPTER_DIR",
                       help="a run folder (runs/<run>) or its adapter/ folder")
    score.add_argument("table", type=Path, metavar="TABLE",
                       help="a site YAML (its data block: path, format, column mapping) or a "
                       "table in our layout (.parquet, .csv, .jsonl)")
    score.add_argument("--out", type=Path, required=True, help="the file to write")
    score.add_argument("--format", default=None, metavar="|".join(OUTPUT_FORMATS),
                       help="output format (default: from the --out suffix)")
    score.add_argument("--batch-size", type=int, default=64, help="encounters per forward pass")
    score.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    score.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="auto: bf16 where the device computes it natively, as a site without "
                       "DP does (a GPU with bf16, a CPU with AVX512-BF16); fp32: always")
    score.add_argument("--base", default=None,
                       help="the base model here (a named base or local folder), when not where "
                       "model.json says")
    score.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    score.set_defaults(handler=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    """Score TABLE with the exported model and write --out."""
    from client.model import select_device

    fmt = output_format(args.out, args.format)
    if args.out.exists() and not args.overwrite:
        raise InvalidScoringInput(f"{args.out}: exists; expected a new file (or --overwrite)")
    if args.batch_size < 1:
        raise InvalidScoringInput(f"`--batch-size` is {args.batch_size}; expected >= 1")
    try:
        device = select_device(args.device)
    except (ValueError, RuntimeError) as error:
        raise InvalidScoringInput(str(error).replace("`device`", "`--device`")) from None
    folder = model_folder(args.model)
    manifest = read_manifest(folder)
    table = read_table_to_score(args.table, manifest.tasks)
    model, manifest = load_exported_model(folder, device=device, base=args.base,
                                          precision=args.precision)
    scores = score_table(model, manifest, table, batch_size=args.batch_size, base=args.base)
    write_scores(scores, args.out, fmt)
    print(f"wrote {args.out}: {len(scores)} encounters, {len(manifest.tasks)} tasks "
          f"({', '.join(manifest.tasks)})")
    return 0


def output_format(out: Path, fmt: str | None) -> str:
    """`fmt`, or the one `out`'s suffix names; raises `InvalidScoringInput` for anything else."""
    chosen = fmt if fmt is not None else out.suffix.lstrip(".").lower()
    if chosen not in OUTPUT_FORMATS:
        what = f"`--format` is {fmt!r}" if fmt is not None else f"{out}: suffix {out.suffix!r}"
        raise InvalidScoringInput(f"{what}; expected one of {', '.join(OUTPUT_FORMATS)}"
                                  + ("" if fmt is not None else " (or pass --format)"))
    return chosen


def model_folder(path: Path) -> Path:
    """The exported model's folder: `path` itself when it holds `model.json`, else its
    `adapter/` (a run folder)."""
    if not path.is_dir():
        raise InvalidExportedModel(f"{path}: is not a folder; expected a run folder (runs/<run>) "
                                   "or its adapter/ folder")
    if not (path / MANIFEST_FILE).is_file() and (path / "adapter" / MANIFEST_FILE).is_file():
        return path / "adapter"
    return path


def load_exported_model(folder: Path, *, device: torch.device, base: str | None = None,
                        precision: str = "auto") -> tuple[TaskModel, ModelManifest]:
    """The model exported to `folder` (`client.adapter_export.save_adapter`), in eval mode on `device`,
    and its manifest; `base` replaces the manifest's base (the same model, found elsewhere).
    `precision` as a site's (`client.precision`): its base in bf16 where a site without DP on
    this device computes in bf16, so the hospital's scores are the ones its evaluation gave."""
    from dataclasses import replace

    from peft.utils import SAFETENSORS_WEIGHTS_NAME, load_peft_weights
    from safetensors.torch import load_file

    from client.adapter_export import HEADS_FILE, settings_of
    from client.letter_scoring import PROMPTS_FILE
    from client.model import LetterModel, build_model, load_trainable_state
    from client.precision import base_weights_dtype
    from strategies.exchange import ADAPTER_PREFIX, HEAD_PREFIX

    manifest = read_manifest(folder)
    settings = settings_of(manifest)
    if base is not None:
        settings = replace(settings, base=base)
    needed = [SAFETENSORS_WEIGHTS_NAME, HEADS_FILE if manifest.scoring == "head" else PROMPTS_FILE]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise InvalidExportedModel(f"{folder}: has no {missing[0]}; expected it beside "
                                   f"{MANIFEST_FILE} (an incomplete copy of the adapter folder?)")
    model = build_model(settings, device=device,
                        base_dtype=base_weights_dtype(device, private=False, precision=precision))
    state = {ADAPTER_PREFIX + k: v.numpy()
             for k, v in load_peft_weights(str(folder), device="cpu").items()}
    if manifest.scoring == "head":
        state.update({HEAD_PREFIX + k: v.numpy()
                      for k, v in load_file(str(folder / HEADS_FILE)).items()})
    try:
        load_trainable_state(model, state)
    except (KeyError, ValueError) as error:
        raise InvalidExportedModel(f"{folder}: its weights do not fit base {settings.base!r} "
                                   f"({error.args[0]})") from None
    if isinstance(model, LetterModel):
        _check_letters(model, folder / PROMPTS_FILE, settings.base)
    return model.eval(), manifest


def _check_letters(model: TaskModel, prompts_file: Path, base: str) -> None:
    """The base's tokenizer must give the answer letters the token ids the model learned."""
    import json

    recorded = json.loads(prompts_file.read_text())["tasks"]
    for task, entry in recorded.items():
        ids = list(model.letter_ids[: len(entry["letter_token_ids"])])
        if ids != entry["letter_token_ids"]:
            raise InvalidExportedModel(
                f"{prompts_file}: task `{task}` was scored with letter tokens "
                f"{entry['letter_token_ids']} but base {base!r} gives {ids}; expected the base "
                "the model was trained on")


def read_table_to_score(path: Path, tasks: tuple[str, ...]) -> pd.DataFrame:
    """The encounters to score: a site YAML's table (its column mapping applied) or a table file
    in our layout, with ids and the notes `tasks` read validated (`sites.dataset.
    read_scoring_table`: errors name file, row and column); labels and split are not needed."""
    from sites.config import SiteConfig, load_site
    from sites.dataset import read_scoring_table
    from sites.site_settings import DataSource

    suffix = path.suffix.lower()
    if suffix in SITE_SUFFIXES:
        site = load_site(path)
    elif suffix.lstrip(".") in OUTPUT_FORMATS:
        if not path.is_file():
            raise InvalidScoringInput(f"{path}: does not exist; expected the table to score")
        source = DataSource(path=path.resolve(), format=suffix.lstrip("."))
        site = SiteConfig(name="scored-table", role="external", data=source, tasks=tasks)
    else:
        raise InvalidScoringInput(f"{path}: suffix {path.suffix!r}; expected a site YAML "
                                  f"(.yaml) or a table ({', '.join(OUTPUT_FORMATS)})")
    return read_scoring_table(site, tasks=tasks)


def score_table(model: TaskModel, manifest: ModelManifest, table: pd.DataFrame, *,
                batch_size: int, base: str | None = None) -> pd.DataFrame:
    """`encounter_id`, `patient_id` and the class probabilities `<task>.p_<class>` of every row
    of `table` (validated by `read_table_to_score`), in its order."""
    from dataclasses import replace

    from client.adapter_export import settings_of
    from client.data import encode_split
    from client.evaluate import predict
    from client.model import load_tokenizer
    from client.model_manifest import probability_column
    from sites.tasks import ID_COLUMNS, TASKS

    settings = settings_of(manifest)
    if base is not None:
        settings = replace(settings, base=base)
    log.info("scoring %d encounters for %s", len(table), ", ".join(manifest.tasks))
    encoded = encode_split(table, load_tokenizer(settings), manifest.tasks,
                           max_length=manifest.max_length, scoring=manifest.scoring,
                           labelled=False)
    probs = predict(model, encoded, manifest.tasks, batch_size=batch_size)
    out = table[list(ID_COLUMNS)].reset_index(drop=True).copy()
    for task in manifest.tasks:
        for k, name in enumerate(TASKS[task].class_names):
            out[probability_column(task, name)] = probs[task][:, k]
    return out


def write_scores(scores: pd.DataFrame, out: Path, fmt: str) -> None:
    """Write `scores` to `out` atomically (temporary file, then rename: `sites.dataset`)."""
    from sites.dataset import write_site_table
    from sites.site_settings import DataSource

    write_site_table(scores, DataSource(path=out.expanduser().resolve(), format=fmt))

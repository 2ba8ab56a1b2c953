"""A finished model as a folder a hospital can use: the adapter, heads or prompts, and what rebuilds it.

`save_adapter` writes what `lang1-fl score` (client/score.py) and plain peft load: the LoRA
adapter by `save_pretrained`, the task heads (`heads.safetensors`) or a letter model's prompts,
`model.json` (client/model_manifest.py: base, note length, scoring, tasks, LoRA settings, seed)
and the model card. `settings_of` reads those settings back, so the folder alone rebuilds the
model it came from.
"""

from __future__ import annotations

from pathlib import Path

from client.letter_scoring import save_letter_prompts
from client.model import LetterModel, LoraSettings, ModelSettings, TaskModel
from client.model_card import write_model_card
from client.model_manifest import ModelManifest, write_manifest
from sites.tasks import TASKS

HEADS_FILE = "heads.safetensors"


def save_adapter(model: TaskModel, out_dir: Path, *, settings: ModelSettings) -> None:
    """Write the adapter with `save_pretrained` (plain `PeftModel.from_pretrained` loads it) and,
    when the model has heads, `heads.safetensors` (keys `<task>.weight|bias`, task classes in the
    metadata); a letter-scoring model writes its prompts and answer letters instead. `model.json`
    (client/model_manifest.py) records `settings` — the ones `model` was built with — so that the
    folder alone rebuilds the model (`lang1-fl score`), and `README.md` is its model card
    (client/model_card.py)."""
    from safetensors.torch import save_file

    manifest = _manifest_of(model, settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_peft_portably(model.backbone, out_dir, base=settings.base)
    write_manifest(manifest, out_dir)
    write_model_card(manifest, out_dir)  # replaces peft's blank template
    if isinstance(model, LetterModel):
        save_letter_prompts(model.tasks, model.letter_ids, out_dir)
        return
    heads = {k: v.detach().to("cpu").contiguous() for k, v in model.heads.state_dict().items()}
    metadata = {t: ",".join(TASKS[t].class_names) for t in model.tasks}
    metadata["pooling"] = model.pooling
    save_file(heads, str(out_dir / HEADS_FILE), metadata=metadata)


def _save_peft_portably(backbone, out_dir: Path, *, base: str) -> None:
    """`save_pretrained`, with `adapter_config.json` naming the base as the run config did
    (`all-MiniLM-L6-v2`), not by the absolute path it was loaded from on this machine."""
    config = backbone.peft_config["default"]
    loaded_from, config.base_model_name_or_path = config.base_model_name_or_path, base
    try:
        backbone.save_pretrained(out_dir)
    finally:
        config.base_model_name_or_path = loaded_from


def _manifest_of(model: TaskModel, settings: ModelSettings) -> ModelManifest:
    """`settings` as a manifest, refused when they do not describe `model` (its tasks, its LoRA
    rank and scaling: FLoRA's saved adapter has another rank than the run's)."""
    peft_config = model.backbone.peft_config["default"]
    lora = settings.lora
    built = (tuple(model.tasks), peft_config.r, float(peft_config.lora_alpha))
    if built != (settings.tasks, lora.r, float(lora.alpha)):
        raise ValueError(f"`settings` say tasks {list(settings.tasks)}, LoRA r={lora.r}, "
                         f"alpha={lora.alpha} but the model has tasks {list(built[0])}, "
                         f"r={built[1]}, alpha={built[2]}; expected the settings it was built with")
    return ModelManifest(
        base=settings.base, max_length=settings.max_length, scoring=model.scoring,
        tasks=settings.tasks, lora_r=lora.r, lora_alpha=float(lora.alpha),
        lora_dropout=lora.dropout, lora_target_modules=lora.target_modules, seed=settings.seed,
        lora_layers=lora.layers)


def settings_of(manifest: ModelManifest) -> ModelSettings:
    """The settings an exported model was built with, from its manifest (scoring resolved)."""
    lora = LoraSettings(r=manifest.lora_r, alpha=manifest.lora_alpha,
                        dropout=manifest.lora_dropout,
                        target_modules=manifest.lora_target_modules,
                        layers=manifest.lora_layers)
    return ModelSettings(base=manifest.base, max_length=manifest.max_length, lora=lora,
                         tasks=manifest.tasks, seed=manifest.seed, scoring=manifest.scoring)

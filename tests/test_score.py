"""`lang1-fl score` (client/score.py) and the manifest that makes an exported folder usable alone.

The spec: scoring a table through the command gives exactly the probabilities evaluation computes
for the same model and rows — so the AUROC of the written file equals `evaluate_split`'s — for a
head-scoring encoder and a letter-scoring decoder; `model.json` round-trips; bad input is one line
on stderr, exit 2, and no output file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from client.adapter_export import save_adapter, settings_of
from client.data import encode_site
from client.evaluate import evaluate_split
from client.model import build_model, load_tokenizer, load_trainable_state, trainable_state
from client.model_manifest import MANIFEST_FILE, ModelManifest, probability_column, read_manifest
from server.cli import main as lang1_fl
from sites.tasks import SPLIT_COLUMN, TASKS
from tests.model_settings import model_settings
from tests.tiny_models import keyword_table

CPU = torch.device("cpu")
TASK_MIX = ("mortality", "readmission", "los")  # both note types; 2, 2 and 4 classes
LABELS = [TASKS[t].label_column for t in TASK_MIX]


def exported(base: Path, folder: Path, *, max_length: int, seed: int = 0):
    """A model on `base` with random (non-zero) adapter and heads, saved to `folder`."""
    settings = model_settings(base=str(base), max_length=max_length, tasks=TASK_MIX)
    model = build_model(settings, device=CPU)
    rng = np.random.default_rng(seed)
    load_trainable_state(model, {k: (0.3 * rng.normal(size=v.shape)).astype(np.float32)
                                 for k, v in trainable_state(model).items()})
    save_adapter(model, folder, settings=settings)
    return model, settings


def unlabelled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows as a hospital would score them: no split, no labels, no oracle columns."""
    return table.drop(columns=[SPLIT_COLUMN, *[TASKS[t].label_column for t in TASKS]])


@pytest.mark.parametrize("base_fixture, max_length, scoring", [
    ("tiny_encoder", 32, "head"), ("letter_llama", 128, "letters")])
def test_scored_probabilities_give_the_auroc_evaluation_reports(
        base_fixture, max_length, scoring, request, tmp_path, capsys):
    base = request.getfixturevalue(base_fixture)
    model, settings = exported(base, tmp_path / "run" / "adapter", max_length=max_length)
    assert model.scoring == scoring
    table = keyword_table(80, seed=3)
    test = table[table[SPLIT_COLUMN] == "test"]
    unlabelled(test).to_parquet(tmp_path / "new.parquet", index=False)

    out = tmp_path / "scores.csv"
    argv = ["score", str(tmp_path / "run"), str(tmp_path / "new.parquet"), "--out", str(out),
            "--batch-size", "7", "--device", "cpu", "--precision", "fp32"]  # as `model` is built
    assert lang1_fl(argv) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 20 encounters, 3 tasks")

    scores = pd.read_csv(out, dtype={"encounter_id": str, "patient_id": str})
    columns = [probability_column(t, c) for t in TASK_MIX for c in TASKS[t].class_names]
    assert list(scores.columns) == ["encounter_id", "patient_id", *columns]
    assert scores["encounter_id"].tolist() == test["encounter_id"].tolist()
    splits = encode_site(table, load_tokenizer(settings), TASK_MIX, max_length=max_length,
                         scoring=scoring)
    reported = evaluate_split(model, splits["test"], TASK_MIX, batch_size=16, seed=0,
                              n_resamples=10)
    for task in TASK_MIX:
        probs = scores[[probability_column(task, c) for c in TASKS[task].class_names]].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        y = test[TASKS[task].label_column].to_numpy()
        if TASKS[task].is_binary:
            written = roc_auc_score(y, probs[:, 1])
        else:
            assert set(y) == set(range(TASKS[task].num_classes))  # sklearn's ovr needs them all
            written = roc_auc_score(y, probs, multi_class="ovr", average="macro")
        assert written == pytest.approx(reported[f"{task}.auroc"], abs=1e-6)


def test_a_site_yaml_with_its_column_mapping_scores_every_encounter(tiny_encoder, tmp_path):
    exported(tiny_encoder, tmp_path / "adapter", max_length=32)
    table = keyword_table(24, seed=1)
    ours = tmp_path / "ours.jsonl"
    unlabelled(table).to_json(ours, orient="records", lines=True)
    theirs = unlabelled(table).rename(columns={"admission_note": "hp_text", "encounter_id": "hadm"})
    theirs.to_csv(tmp_path / "extract.csv", index=False)
    site = {"name": "north", "role": "external", "tasks": ["mortality"], "device": "cpu",
            "data": {"path": "extract.csv", "format": "csv",
                     "columns": {"admission_note": "hp_text", "encounter_id": "hadm"}}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))

    assert lang1_fl(["score", str(tmp_path / "adapter"), str(tmp_path / "site.yaml"),
                     "--out", str(tmp_path / "a.parquet")]) == 0
    assert lang1_fl(["score", str(tmp_path / "adapter"), str(ours),
                     "--out", str(tmp_path / "b.out"), "--format", "parquet"]) == 0
    by_yaml, by_file = (pd.read_parquet(tmp_path / name) for name in ("a.parquet", "b.out"))
    assert len(by_yaml) == 24  # every split: no split rule applies to scoring
    pd.testing.assert_frame_equal(by_yaml, by_file)


def test_the_manifest_round_trips_and_plain_peft_still_loads(tiny_encoder, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    _, settings = exported(tiny_encoder, tmp_path, max_length=32)
    manifest = read_manifest(tmp_path)
    assert settings_of(manifest) == replace(settings, scoring="head")
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert raw["base"] == str(tiny_encoder) and raw["max_length"] == 32
    assert raw["lora"] == {"r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": None,
                           "layers": 0}
    assert [(t["name"], t["note_column"], t["class_names"]) for t in raw["tasks"]] == [
        ("mortality", "admission_note", ["no", "yes"]),
        ("readmission", "discharge_note", ["no", "yes"]),
        ("los", "admission_note", ["0-2", "3", "4-5", ">5"])]
    assert raw["tasks"][0]["output_columns"] == ["mortality.p_no", "mortality.p_yes"]
    again = tmp_path / "again"
    again.mkdir()
    from client.model_manifest import write_manifest
    write_manifest(manifest, again)
    assert read_manifest(again) == manifest == ModelManifest(**vars(manifest))
    PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_encoder), tmp_path)


def test_settings_that_do_not_describe_the_model_are_refused(tiny_encoder, tmp_path):
    model, settings = exported(tiny_encoder, tmp_path / "a", max_length=32)
    other = replace(settings, lora=replace(settings.lora, r=4))
    with pytest.raises(ValueError, match="LoRA r=4, alpha=16.0 but the model has tasks "):
        save_adapter(model, tmp_path / "b", settings=other)
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def adapter(tiny_encoder, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "adapter"
    exported(tiny_encoder, folder, max_length=32)
    return folder


def _table(tmp_path: Path, edit=None, name: str = "new.parquet") -> Path:
    table = unlabelled(keyword_table(12))
    if edit:
        table = edit(table)
    path = tmp_path / name
    table.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("case, make, expected", [
    ("no manifest",
     lambda d, a: (["score", str(d), str(_table(d)), "--out", str(d / "s.csv")]),
     "has no model.json; expected a run folder (runs/<run>) or its adapter/ folder"),
    ("unknown suffix",
     lambda d, a: (["score", str(a), str(_table(d)), "--out", str(d / "s.xlsx")]),
     "suffix '.xlsx'; expected one of parquet, csv, jsonl (or pass --format)"),
    ("unknown format",
     lambda d, a: (["score", str(a), str(_table(d)), "--out", str(d / "s.csv"), "--format", "xml"]),
     "`--format` is 'xml'; expected one of parquet, csv, jsonl"),
    ("missing note column",
     lambda d, a: (["score", str(a), str(_table(d, lambda t: t.drop(columns="discharge_note"))),
                    "--out", str(d / "s.csv")]),
     "new.parquet: column `discharge_note` is missing; expected it for the discharge note read "
     "by task 'readmission'"),
    ("blank note",
     lambda d, a: (["score", str(a), str(_table(d, lambda t: t.assign(admission_note=[
         *["x"] * 4, " ", *["x"] * 7]))), "--out", str(d / "s.csv")]),
     "new.parquet: row 5, column `admission_note` is empty; expected the note text"),
    ("table of unknown kind",
     lambda d, a: (["score", str(a), str(_table(d, name="new.xlsx")), "--out", str(d / "s.csv")]),
     "new.xlsx: suffix '.xlsx'; expected a site YAML (.yaml) or a table (parquet, csv, jsonl)"),
    ("missing table",
     lambda d, a: (["score", str(a), str(d / "nothing.csv"), "--out", str(d / "s.csv")]),
     "nothing.csv: does not exist; expected the table to score"),
    ("bad batch size",
     lambda d, a: (["score", str(a), str(_table(d)), "--out", str(d / "s.csv"),
                    "--batch-size", "0"]),
     "`--batch-size` is 0; expected >= 1"),
])
def test_bad_input_is_one_line_and_writes_nothing(case, make, expected, adapter, tmp_path,
                                                   capsys):
    folder = tmp_path / "work"
    folder.mkdir()
    assert lang1_fl(make(folder, adapter)) == 2, case
    error = capsys.readouterr().err.strip()
    assert expected in error and "\n" not in error, error
    assert not list(folder.glob("s.*")) and not list(folder.glob(".s.*"))


def test_an_adapter_folder_missing_its_heads_or_an_existing_output_is_refused(
        adapter, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(adapter, copy)
    (copy / "heads.safetensors").unlink()
    table = _table(tmp_path)
    assert lang1_fl(["score", str(copy), str(table), "--out", str(tmp_path / "s.csv")]) == 2
    assert "has no heads.safetensors; expected it beside model.json" in capsys.readouterr().err
    (tmp_path / "s.csv").write_text("keep me")
    assert lang1_fl(["score", str(adapter), str(table), "--out", str(tmp_path / "s.csv")]) == 2
    assert "s.csv: exists; expected a new file (or --overwrite)" in capsys.readouterr().err
    assert (tmp_path / "s.csv").read_text() == "keep me"


def test_base_names_the_base_where_it_lives_here(tiny_encoder, adapter, tmp_path):
    import shutil

    moved = shutil.copytree(tiny_encoder, tmp_path / "models" / "encoder")
    table = _table(tmp_path)
    assert lang1_fl(["score", str(adapter), str(table), "--out", str(tmp_path / "a.csv")]) == 0
    assert lang1_fl(["score", str(adapter), str(table), "--out", str(tmp_path / "b.csv"),
                     "--base", str(moved)]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()

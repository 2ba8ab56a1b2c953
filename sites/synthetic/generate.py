"""Generate one synthetic hospital's encounter table, or every synthetic site of a consortium.

A site's table depends only on the consortium seed, the site's name and its `synthetic` block: the
site seed is a hash of the consortium seed and the name, so sites are independent draws and adding a
site changes no other site. Facts, notes, splits and patients' charts use separate random streams
spawned from that seed, so changing a note style leaves every label and probability as it was.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd

from sites.config import ConsortiumConfig, SyntheticSpec
from sites.splits import split_by_patient
from sites.synthetic.chart import PatientRecord, draw_chart
from sites.synthetic.note_builder import Note
from sites.synthetic.notes import render_notes
from sites.synthetic.patients import simulate_encounters
from sites.synthetic.profiles import PROFILES
from sites.synthetic.stated_facts import FACTS_COLUMNS, encode_facts
from sites.synthetic.styles import NoteStyle
from sites.tasks import TASKS

log = logging.getLogger(__name__)

FACT_COLUMNS: tuple[str, ...] = ("los_days", "cci_score", "age", "sex", "payer", "diagnosis",
                                 "icu", "disposition", "conditions")
"""Structured facts kept in the table for analysis (models read only the notes); the notes' own
record of what they state where is in FACTS_COLUMNS (`sites.synthetic.stated_facts`)."""


def site_seed(seed: int, site_name: str) -> int:
    """A site's own seed from the consortium seed and its name (stable across Python runs)."""
    digest = hashlib.sha256(f"{seed}:{site_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def generate_site(spec: SyntheticSpec, *, site_name: str, seed: int) -> pd.DataFrame:
    """`spec.encounters` encounters of profile `spec.profile`, with notes, the record of what
    each note states where (FACTS_COLUMNS), labels for every task, oracle probabilities and a
    patient-level split. Identical for identical arguments."""
    profile = PROFILES[spec.profile]
    streams = np.random.SeedSequence(site_seed(seed, site_name)).spawn(4)
    facts_seq, notes_seq, split_seq, chart_seq = streams
    df = simulate_encounters(profile, spec.encounters, np.random.default_rng(facts_seq))
    admission, discharge = _write_notes(df, profile.style, notes_seq, chart_seq)
    df["encounter_id"] = [f"{site_name}-E{i:06d}" for i in range(len(df))]
    df["patient_id"] = [f"{site_name}-P{p:06d}" for p in df["patient_index"]]
    df["split"] = split_by_patient(df["patient_id"].to_numpy(),
                                   seed=int(split_seq.generate_state(1)[0]))
    df["admission_note"] = [note.text for note in admission]
    df["discharge_note"] = [note.text for note in discharge]
    df[FACTS_COLUMNS["admission"]] = [encode_facts(note.facts) for note in admission]
    df[FACTS_COLUMNS["discharge"]] = [encode_facts(note.facts) for note in discharge]
    label_columns = [spec_.label_column for spec_ in TASKS.values()]
    oracle_columns = [c for spec_ in TASKS.values() for c in spec_.oracle_columns]
    columns = ["encounter_id", "patient_id", "split", "admit_date", "admission_note",
               "discharge_note", *label_columns, *oracle_columns, *FACT_COLUMNS,
               *FACTS_COLUMNS.values()]
    return df[columns].astype({"icu": bool}).reset_index(drop=True)


def _write_notes(df: pd.DataFrame, style: NoteStyle, notes_seq: np.random.SeedSequence,
                 chart_seq: np.random.SeedSequence) -> tuple[list[Note], list[Note]]:
    """Both notes of every encounter. Charts come from their own stream, one per patient in
    order of first encounter, so a patient's chart never depends on how notes were worded."""
    rng = random.Random(int(notes_seq.generate_state(1)[0]))
    chart_rng = random.Random(int(chart_seq.generate_state(1)[0]))
    records: dict[int, PatientRecord] = {}
    admission, discharge = [], []
    for facts in df.to_dict("records"):
        patient = int(facts["patient_index"])
        if patient not in records:
            records[patient] = PatientRecord(draw_chart(facts, style, chart_rng))
        first, second = render_notes(facts, records[patient], style, rng)
        admission.append(first)
        discharge.append(second)
    return admission, discharge


def generate_consortium(consortium: ConsortiumConfig, *,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write the table of every site with a `synthetic` block to its data path; an existing table
    is kept unless `overwrite`. Returns the paths written, by site name."""
    from sites.dataset import write_site_table  # the table writer needs pyarrow only here

    written: dict[str, Path] = {}
    for site in consortium.sites:
        if site.synthetic is None:
            continue
        if site.data.path.exists() and not overwrite:
            log.info("site %s: %s exists, kept (overwrite to regenerate)", site.name,
                     site.data.path)
            continue
        log.info("site %s: generating %d %s encounters", site.name, site.synthetic.encounters,
                 site.synthetic.profile)
        table = generate_site(site.synthetic, site_name=site.name, seed=consortium.seed)
        write_site_table(table, site.data)
        log.info("site %s: wrote %s", site.name, site.data.path)
        written[site.name] = site.data.path
    return written

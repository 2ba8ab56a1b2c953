"""How long are the synthetic notes, and how much of their signal lies past the first tokens?

Used by bench/quality.py. The note-level ceiling (sites/synthetic/note_ceiling.py) is the AUROC of
P(label | the facts a note states within the first N tokens), fitted on a site's train and
validation splits and scored on its test split, as each site computes it during a run
(client/note_ceiling.py, the same tokenizer cut). Its distance above chance is the signal a reader
of those tokens can use; the share of the whole note's signal that a cut at N tokens loses is

    (ceiling(whole note) − ceiling(first N)) ÷ (ceiling(whole note) − 0.5),

macro over tasks. The issue's bar: the first 512 tokens hold much of it but not all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from client.base_model import resolve_base_path
from client.note_ceiling import note_ceilings
from sites.config import ConsortiumConfig
from sites.tasks import NOTE_COLUMNS, TASKS

CUTS: tuple[int, ...] = (128, 512)
WHOLE_NOTE = 1_000_000
"""A token limit no synthetic note reaches: the whole note is read."""


def auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUROC from [N, 2] class probabilities, or macro one-vs-rest over present classes."""
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1])) if 0 < y.sum() < len(y) else float("nan")
    scores = [roc_auc_score(y == k, probs[:, k]) for k in range(probs.shape[1])
              if 0 < (y == k).sum() < len(y)]
    return float(np.mean(scores)) if scores else float("nan")


def oracle_classes(df: pd.DataFrame, task: str) -> np.ndarray | None:
    """The generator's class probabilities [N, K] of `task` (None without its oracle columns)."""
    columns = list(TASKS[task].oracle_columns)
    if not set(columns) <= set(df.columns):
        return None
    probs = df[columns].to_numpy(dtype=np.float64)
    return np.column_stack([1.0 - probs[:, 0], probs[:, 0]]) if len(columns) == 1 else probs


def load_tokenizer(base: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_base_path(base), local_files_only=True)


def print_lengths(consortium: ConsortiumConfig, tables: dict[str, pd.DataFrame], tokenizer,
                  base: str) -> None:
    """Words and tokens per note type and site (10th/50th/90th percentiles, share past each cut)."""
    print(f"\n== Note lengths: words, and tokens of {base} ==")
    cut_heads = " ".join(f"{'>' + str(c) + ' tok':>8s}" for c in CUTS)
    print(f"{'site':16s} {'note':10s} {'words p10/p50/p90':>20s} {'tokens p10/p50/p90':>20s} "
          f"{cut_heads}")
    for site in consortium.sites:
        df = tables[site.name]
        for note, column in NOTE_COLUMNS.items():
            texts = df[column].astype(str).tolist()
            words = np.array([len(t.split()) for t in texts])
            tokens = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False,
                                                             verbose=False)["input_ids"]])
            past = " ".join(f"{np.mean(tokens > c):8.0%}" for c in CUTS)
            print(f"{site.name:16s} {note:10s} {_pct(words):>20s} {_pct(tokens):>20s} {past}")


def _pct(values: np.ndarray) -> str:
    return "/".join(str(int(round(np.percentile(values, q)))) for q in (10, 50, 90))


def site_ceilings(df: pd.DataFrame, tasks: Sequence[str], tokenizer
                  ) -> dict[str, dict[str, float]]:
    """Per task, test-split AUROC of the oracle and of the note ceiling at each cut and whole."""
    oracle = {t: p for t in tasks if (p := oracle_classes(df, t)) is not None}
    test = (df["split"] == "test").to_numpy()
    result: dict[str, dict[str, float]] = {t: {} for t in oracle}
    for limit in (*CUTS, WHOLE_NOTE):
        probs = note_ceilings(df, tokenizer, list(oracle), oracle, max_length=limit,
                              scoring="head")
        for task, p in probs.items():
            y = df[TASKS[task].label_column].to_numpy()[test]
            result[task]["whole" if limit == WHOLE_NOTE else str(limit)] = auroc(y, p[test])
    for task, p in oracle.items():
        result[task]["oracle"] = auroc(df[TASKS[task].label_column].to_numpy()[test], p[test])
    return result


def signal_beyond(ceilings: dict[str, float], cut: int) -> float:
    """The share of the whole note's signal (ceiling − 0.5) lost by reading only `cut` tokens."""
    whole = ceilings["whole"] - 0.5
    return (ceilings["whole"] - ceilings[str(cut)]) / whole if whole > 0 else float("nan")


def print_ceilings(consortium: ConsortiumConfig, tables: dict[str, pd.DataFrame], tokenizer,
                   base: str) -> dict[str, float]:
    """Both ceilings per site and task, side by side; returns the in-distribution macro shares of
    the signal past each cut, keyed by the cut."""
    tasks = consortium.tasks
    print(f"\n== Ceilings on each site's test split: oracle (latent) and note ceiling (facts "
          f"stated within the first N tokens of {base}; fitted on train + validation) ==")
    columns = ("oracle", "whole", *map(str, CUTS))
    print(f"{'site':16s} {'task':12s} " + " ".join(f"{c:>8s}" for c in columns)
          + " " + " ".join(f"{'>' + str(c):>7s}" for c in CUTS))
    shares: dict[int, list[float]] = {c: [] for c in CUTS}
    for site in consortium.sites:
        per_task = site_ceilings(tables[site.name], tasks, tokenizer)
        for task, row in per_task.items():
            beyond = [signal_beyond(row, c) for c in CUTS]
            if not site.is_external:
                for c, share in zip(CUTS, beyond):
                    shares[c].append(share)
            print(f"{site.name:16s} {task:12s} " + " ".join(f"{row[c]:8.3f}" for c in columns)
                  + " " + " ".join(f"{b:7.0%}" for b in beyond))
    macro = {str(c): float(np.nanmean(v)) for c, v in shares.items()}
    print("share of the note's signal past the cut (training sites, macro over sites and tasks): "
          + ", ".join(f"past {c} tokens {macro[str(c)]:.0%}" for c in CUTS))
    return macro

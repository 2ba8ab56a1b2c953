"""Is the synthetic consortium a fair test bed? Both ceilings, note lengths, a text baseline, its drop.

Generates the default consortium in a temporary folder and prints:

1. per site: prevalences, median length of stay and the oracle (Bayes) AUROC of every task, from the
   generator's true label probabilities. In distribution the binary tasks must sit in 0.70-0.92:
   learnable, never trivially separable.
2. a TF-IDF + logistic-regression baseline per task, trained on the four training hospitals' pooled
   train splits, scored on their pooled test splits (in distribution) and on the external system's
   test split. The baseline must stay below the oracle (the notes carry signal, not the answer) and
   lose at least 0.03 AUROC on the external system (the style and population shift is real), without
   collapsing to chance there: its macro drop must lie in 0.03-0.15 (a real shift, not a different
   task).
3. note lengths per site and note type, in words and in the base's tokens (bench/note_signal.py);
4. both ceilings side by side on every site's test split: the oracle (latent) and the note-level
   ceiling (the facts a note states within its first 128 and 512 tokens, and in the whole note),
   and the share of the whole note's signal that lies past 128 and past 512 tokens. The first 512
   tokens must hold much of it but not all (past 512: more than 0 %, at most a third).

Usage: python bench/quality.py [--encounters N] [--seed S] [--base NAME]

What it prints is also kept, with the date, machine and command, in bench/results/quality.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.note_signal import load_tokenizer, print_ceilings, print_lengths  # noqa: E402
from bench.results_file import record_printed  # noqa: E402
from sites.config import DEFAULT_CONSORTIUM, ConsortiumConfig, SiteConfig, load_consortium  # noqa: E402
from sites.dataset import read_site_table  # noqa: E402
from sites.synthetic import generate_consortium  # noqa: E402
from sites.tasks import NOTE_COLUMNS, TASKS  # noqa: E402

log = logging.getLogger("bench.quality")
ORACLE_RANGE = (0.70, 0.92)
MIN_DROP, MAX_DROP = 0.03, 0.15
PAST_512 = (0.0, 1 / 3)


def auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUROC from P(positive), or macro one-vs-rest over the classes present."""
    if probs.ndim == 1:
        return float(roc_auc_score(y, probs)) if 0 < y.sum() < len(y) else float("nan")
    scores = [roc_auc_score(y == k, probs[:, k]) for k in range(probs.shape[1])
              if 0 < (y == k).sum() < len(y)]
    return float(np.mean(scores)) if scores else float("nan")


def oracle_probs(df: pd.DataFrame, task: str) -> np.ndarray:
    columns = list(TASKS[task].oracle_columns)
    return df[columns[0]].to_numpy() if len(columns) == 1 else df[columns].to_numpy()


def build(encounters: int | None, seed: int | None, root: Path, *,
          external_encounters: int | None = None) -> tuple[ConsortiumConfig, dict]:
    """The default consortium generated under `root`, optionally resized; its validated tables."""
    consortium = load_consortium(DEFAULT_CONSORTIUM, data_root=root)

    def size(site: SiteConfig) -> int:
        wanted = external_encounters if site.is_external else encounters
        return wanted or site.synthetic.encounters

    sites = tuple(dataclasses.replace(s, synthetic=dataclasses.replace(s.synthetic,
                                                                       encounters=size(s)))
                  for s in consortium.sites)
    consortium = dataclasses.replace(consortium, sites=sites)
    if seed is not None:
        consortium = dataclasses.replace(consortium, seed=seed)
    generate_consortium(consortium, overwrite=True)
    return consortium, {s.name: read_site_table(s) for s in consortium.sites}


def print_oracle(consortium: ConsortiumConfig, tables: dict[str, pd.DataFrame]) -> bool:
    tasks = consortium.tasks
    print("\n== Oracle (Bayes) AUROC and prevalence, whole site ==")
    print(f"{'site':16s} {'n':>6s} " + " ".join(f"{t[:11]:>11s}" for t in tasks)
          + "  prev(readm/mort/denial)  LOS median")
    ok = True
    for site in consortium.sites:
        df = tables[site.name]
        values = {t: auroc(df[TASKS[t].label_column].to_numpy(), oracle_probs(df, t))
                  for t in tasks}
        for t, value in values.items():
            if TASKS[t].is_binary and not site.is_external:
                ok &= ORACLE_RANGE[0] <= value <= ORACLE_RANGE[1]
        prev = "/".join(f"{df[t].mean():.3f}" for t in ("readmission", "mortality", "denial"))
        print(f"{site.name:16s} {len(df):6d} " + " ".join(f"{v:11.3f}" for v in values.values())
              + f"  {prev:23s}  {df['los_days'].median():.1f}")
    print(f"in-distribution binary oracle AUROC within {ORACLE_RANGE}: {'yes' if ok else 'NO'}")
    return ok


def tfidf_task(task: str, train: pd.DataFrame, tests: dict[str, pd.DataFrame]) -> dict[str, float]:
    spec = TASKS[task]
    column = NOTE_COLUMNS[spec.note]
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform(train[column])
    model = LogisticRegression(C=1.0, solver="saga", max_iter=2000)
    model.fit(x_train, train[spec.label_column])
    log.info("%s: fitted on %d notes in %.1f s", task, len(train), time.perf_counter() - start)
    result = {}
    for name, df in tests.items():
        probs = model.predict_proba(vectorizer.transform(df[column]))
        full = np.zeros((len(df), spec.num_classes))
        full[:, model.classes_] = probs
        y = df[spec.label_column].to_numpy()
        result[name] = auroc(y, full[:, 1] if spec.is_binary else full)
        result[f"oracle_{name}"] = auroc(y, oracle_probs(df, task))
    return result


def print_tfidf(consortium: ConsortiumConfig, tables: dict[str, pd.DataFrame]) -> bool:
    def pooled(sites, split):
        return pd.concat([tables[s.name][tables[s.name]["split"] == split] for s in sites])

    train = pooled(consortium.training_sites, "train")
    tests = {"in_dist": pooled(consortium.training_sites, "test"),
             "external": pooled(consortium.external_sites, "test")}
    print(f"\n== TF-IDF + logistic regression: trained on {len(train)} pooled training-site "
          f"encounters; tested on {len(tests['in_dist'])} in-distribution and "
          f"{len(tests['external'])} external ==")
    print(f"{'task':12s} {'in-dist':>8s} {'oracle':>8s} {'below':>6s} {'external':>9s} "
          f"{'ext oracle':>10s} {'drop':>7s}")
    drops, ok = [], True
    for task in consortium.tasks:
        r = tfidf_task(task, train, tests)
        drop = r["in_dist"] - r["external"]
        below = r["in_dist"] < r["oracle_in_dist"]
        drops.append(drop)
        ok &= below
        flag = "  (< 0.03)" if drop < MIN_DROP and TASKS[task].is_binary else ""
        print(f"{task:12s} {r['in_dist']:8.3f} {r['oracle_in_dist']:8.3f} "
              f"{'yes' if below else 'NO':>6s} {r['external']:9.3f} "
              f"{r['oracle_external']:10.3f} {drop:7.3f}{flag}")
    macro = float(np.mean(drops))
    in_band = MIN_DROP <= macro <= MAX_DROP
    print(f"macro drop over tasks: {macro:.3f} (expected in {MIN_DROP}-{MAX_DROP}: "
          f"{'yes' if in_band else 'NO'}); TF-IDF below the oracle on every task: "
          f"{'yes' if ok else 'NO'}")
    return ok and in_band


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encounters", type=int, default=8000,
                        help="encounters per training site (default 8000; 0 = the consortium's "
                             "own sizes)")
    parser.add_argument("--external-encounters", type=int, default=20000,
                        help="encounters of the external site (default 20000, so its test split "
                             "holds ~100 deaths and the external AUROCs are stable; 0 = as "
                             "--encounters)")
    parser.add_argument("--seed", type=int, default=None, help="consortium seed override")
    parser.add_argument("--base", default="all-MiniLM-L6-v2",
                        help="whose tokens the lengths and the ceilings' cuts count")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        consortium, tables = build(
            args.encounters or None, args.seed, Path(root),
            external_encounters=args.external_encounters or args.encounters or None)
        print(f"generated {sum(map(len, tables.values()))} encounters at {len(tables)} sites in "
              f"{time.perf_counter() - start:.1f} s (seed {consortium.seed})")
        ok = print_oracle(consortium, tables)
        ok &= print_tfidf(consortium, tables)
        tokenizer = load_tokenizer(args.base)
        print_lengths(consortium, tables, tokenizer, args.base)
        past = print_ceilings(consortium, tables, tokenizer, args.base)["512"]
        holds = PAST_512[0] < past <= PAST_512[1]
        print(f"first 512 tokens hold much of the signal but not all (past 512 in "
              f"({PAST_512[0]:.0%}, {PAST_512[1]:.0%}]): {'yes' if holds else 'NO'}")
        ok &= holds
    verdict = "all checks hold" if ok else "SOME CHECKS FAIL"
    print(f"\n{verdict} ({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(record_printed("quality", __doc__.splitlines()[0], main))

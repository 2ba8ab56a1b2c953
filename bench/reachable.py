"""How much of the gap to the note ceiling can any reader close with the default consortium's examples?

The note ceiling (issue 36) is P(label | the facts a note states in its first `max-length` tokens),
fitted to the generator's own probabilities on all of a site's rows: a Bayes ceiling that knows
the facts' effects exactly. A model trained on the training sites has only their labelled
examples (about 1,050 a site in the default consortium, some twenty deaths each). This bench puts
two readers that learn from exactly those examples, pooled, beside the ceiling, on each training
site's test split and on the external system:

- a *perfect reader*: logistic regression on the very facts the ceiling uses (each note's stated
  facts within the first N tokens, read from the generator's own record, no text involved),
  fitted to the labels of the pooled training splits — the best a model reading the first N
  tokens could learn from these examples if it extracted every fact without error;
- TF-IDF (word uni- and bigrams) + logistic regression on the same first N tokens of text.

For each: macro AUROC and the share of the way from chance (0.5) to the note ceiling it goes (the
default run's gap is measured from its untrained round 0, 0.496, so its share is comparable).

    python bench/reachable.py                  # the default consortium at 128 tokens (~2 min)
    python bench/reachable.py --max-length 512

What it prints is also kept, with the date, machine and command, in bench/results/reachable.md
(bench/results_file.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MultiLabelBinarizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.note_signal import auroc, load_tokenizer, oracle_classes  # noqa: E402
from bench.quality import build, tfidf_task  # noqa: E402
from bench.results_file import record_printed  # noqa: E402
from client.note_ceiling import facts_read, note_ceilings, read_windows  # noqa: E402
from sites.tasks import NOTE_COLUMNS, TASKS  # noqa: E402


def first_tokens(df: pd.DataFrame, tokenizer, max_length: int) -> pd.DataFrame:
    """`df` with each note cut to the characters its first `max_length` tokens cover."""
    out = df.copy()
    for column in NOTE_COLUMNS.values():
        texts = out[column].astype(str).tolist()
        out[column] = [t[w.start:w.end] for t, w in
                       zip(texts, read_windows(texts, tokenizer, max_length))]
    return out


def perfect_reader(task: str, train: pd.DataFrame, tests: dict[str, pd.DataFrame], tokenizer,
                   max_length: int) -> dict[str, float]:
    """Test AUROC per site of a logistic regression (scikit-learn's default C) on the stated
    facts within the first `max_length` tokens, fitted to `train`'s labels."""
    spec = TASKS[task]
    one_hot = MultiLabelBinarizer()
    x_train = one_hot.fit_transform(facts_read(train, tokenizer, spec.note, limit=max_length))
    model = LogisticRegression(max_iter=3000).fit(x_train, train[spec.label_column])
    result = {}
    for name, df in tests.items():
        with warnings.catch_warnings():  # a fact no training note stated carries no weight
            warnings.filterwarnings("ignore", message="unknown class")
            x = one_hot.transform(facts_read(df, tokenizer, spec.note, limit=max_length))
        probs = np.zeros((len(df), spec.num_classes))
        probs[:, model.classes_] = model.predict_proba(x)
        y = df[spec.label_column].to_numpy()
        result[name] = auroc(y, probs)
    return result


def ceilings(tables: dict[str, pd.DataFrame], tasks, tokenizer, max_length: int
             ) -> dict[str, dict[str, float]]:
    """Per site, per task: the note ceiling's test-split AUROC (as the run's report computes it)."""
    out = {}
    for name, df in tables.items():
        oracle = {t: p for t in tasks if (p := oracle_classes(df, t)) is not None}
        probs = note_ceilings(df, tokenizer, list(oracle), oracle, max_length=max_length,
                              scoring="head")
        test = (df["split"] == "test").to_numpy()
        out[name] = {t: auroc(df[TASKS[t].label_column].to_numpy()[test], p[test])
                     for t, p in probs.items()}
    return out


def share(value: float, ceiling: float) -> float:
    return (value - 0.5) / (ceiling - 0.5) if ceiling > 0.5 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-length", type=int, default=128,
                        help="tokens read per note (the default run reads 128)")
    parser.add_argument("--base", default="all-MiniLM-L6-v2", help="whose tokens are counted")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.base)
    with tempfile.TemporaryDirectory() as root:
        consortium, tables = build(None, None, Path(root))  # the default consortium's own sizes
    training = [s.name for s in consortium.training_sites]
    external = [s.name for s in consortium.external_sites]
    for name in external:  # evaluated only: its whole table is its test split, as in a run
        tables[name] = tables[name].assign(split="test")
    train = pd.concat([tables[n][tables[n]["split"] == "train"] for n in training])
    tests = {n: tables[n][tables[n]["split"] == "test"] for n in training + external}
    ceiling = ceilings(tables, consortium.tasks, tokenizer, args.max_length)
    cut = {n: first_tokens(df, tokenizer, args.max_length) for n, df in tests.items()}
    train_cut = first_tokens(train, tokenizer, args.max_length)
    print(f"default consortium: {len(train)} pooled training encounters "
          f"({', '.join(training)}); the test split of each and the whole of "
          f"{', '.join(external)}; "
          f"first {args.max_length} tokens of {args.base}")
    print(f"{'task':12s} {'note ceiling':>12s} {'perfect reader':>15s} {'TF-IDF':>8s} | "
          f"{'ext. ceiling':>12s} {'perfect':>8s} {'TF-IDF':>8s}")
    rows = []
    for task in consortium.tasks:
        facts = perfect_reader(task, train, tests, tokenizer, args.max_length)
        words = tfidf_task(task, train_cut, cut)
        row = {key: (float(np.mean([source[n] for n in names])))
               for key, source, names in (
                   ("ceiling", {n: ceiling[n][task] for n in ceiling}, training),
                   ("facts", facts, training), ("tfidf", words, training),
                   ("ext_ceiling", {n: ceiling[n][task] for n in ceiling}, external),
                   ("ext_facts", facts, external), ("ext_tfidf", words, external))}
        rows.append(row)
        print(f"{task:12s} {row['ceiling']:12.3f} {row['facts']:15.3f} {row['tfidf']:8.3f} | "
              f"{row['ext_ceiling']:12.3f} {row['ext_facts']:8.3f} {row['ext_tfidf']:8.3f}")
    macro = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    print(f"{'macro':12s} {macro['ceiling']:12.3f} {macro['facts']:15.3f} {macro['tfidf']:8.3f} | "
          f"{macro['ext_ceiling']:12.3f} {macro['ext_facts']:8.3f} {macro['ext_tfidf']:8.3f}")
    print(f"share of the way from chance to the note ceiling (training sites, macro): perfect "
          f"reader {share(macro['facts'], macro['ceiling']):.2f}, TF-IDF "
          f"{share(macro['tfidf'], macro['ceiling']):.2f}")
    return 0


if __name__ == "__main__":
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--max-length", type=int, default=128)
    _length = _results.parse_known_args()[0].max_length
    raise SystemExit(record_printed("reachable" if _length == 128 else f"reachable_{_length}",
                                    __doc__.splitlines()[0], main, script="reachable.py"))

"""How much of the gap to the note ceiling can any reader close with the default consortium's examples?

The note ceiling (issue 36) is P(label | the facts a note states in its first `max-length` tokens),
fitted to the generator's own probabilities on all of a site's rows: a Bayes ceiling that knows
the facts' effects exactly. A model trained on the training sites has only their labelled
examples (about 1,050 a site in the default consortium, some twenty deaths each). This bench puts
readers that learn from exactly those examples, pooled, beside the ceiling, on each training
site's test split and on the external system:

- a *perfect reader*: logistic regression on the very facts the ceiling uses (each note's stated
  facts within the first N tokens, read from the generator's own record, no text involved),
  fitted to the labels of the pooled training splits — the best a model reading the first N
  tokens could learn from these examples if it extracted every fact without error;
- TF-IDF (word uni- and bigrams) + logistic regression on the same first N tokens of text;
- the default model trained centrally (`--model-batch` > 0): the run config's base, LoRA and
  learning rates, fitted to the pooled training splits with as many examples as the default
  federation's rounds take at all its sites (3 × 4 × 80 × 16 = 15,360 at 80 steps a round; 7,680
  at the 40 of reachable.md's run), in fewer, larger steps (240, then 120, of 64). Where it lands
  beside the federation says whether the federation's shortfall is the model's reach or the
  federated way of spending the same examples.

For each: macro AUROC and the share of the way from chance (0.5) to the note ceiling it goes (the
default run's gap is measured from its untrained round 0, 0.496, so its share is comparable).

    python bench/reachable.py                  # the default consortium at 128 tokens (~15 min)
    python bench/reachable.py --model-batch 0  # the two fact and word readers only (~2 min)
    python bench/reachable.py --max-length 512 --model-batch 0

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
from client.data import encode_split  # noqa: E402
from client.evaluate import predict  # noqa: E402
from client.model import build_model  # noqa: E402
from client.model import load_tokenizer as model_tokenizer  # noqa: E402
from client.note_ceiling import facts_read, note_ceilings, read_windows  # noqa: E402
from client.run_config import default_run_config  # noqa: E402
from client.settings import ClientSettings  # noqa: E402
from client.train import train_steps  # noqa: E402
from sites.tasks import NOTE_COLUMNS, TASKS  # noqa: E402

READERS = {"facts": ("perfect", "perfect reader"), "tfidf": ("TF-IDF", "TF-IDF"),
           "model": ("LoRA", "default model centrally")}
"""Each reader's column heading and its name in the closing line."""


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


def federation_examples(consortium) -> int:
    """Training examples the default federation takes: rounds × Σ over its sites of local steps ×
    batch size (the run config's `local-steps`, or where it is 0 each site's own YAML)."""
    config = default_run_config()
    rounds, steps = int(config["num-server-rounds"]), int(config["local-steps"])
    return rounds * sum((steps or s.training.local_steps) * s.training.batch_size
                        for s in consortium.training_sites)


def central_model(train: pd.DataFrame, tests: dict[str, pd.DataFrame], tasks, *, examples: int,
                  batch_size: int, max_length: int) -> dict[str, dict[str, float]]:
    """Per site, per task: the test AUROC of the run config's default model (base, LoRA, learning
    rates, seed) trained on the pooled `train` rows for `examples // batch_size` steps."""
    import torch

    steps = examples // batch_size
    if steps < 1:
        raise SystemExit(f"--model-batch {batch_size}: larger than the federation's {examples:,} "
                         "examples; expected a batch that leaves at least one step")
    settings = ClientSettings.from_run_config(default_run_config())
    tokenizer = model_tokenizer(settings.model)
    model = build_model(settings.model, device=torch.device("cpu"))
    pooled = encode_split(train, tokenizer, tasks, max_length=max_length)
    result = train_steps(model, pooled, steps=steps, batch_size=batch_size,
                         optimizer=settings.optimizer, seed=settings.seed)
    print(f"default model ({settings.model.base}, LoRA r={settings.model.lora.r}) trained "
          f"centrally: {steps} steps of {batch_size} = {steps * batch_size:,} pooled examples, "
          f"mean loss {result.loss:.3f}")
    out = {}
    for name, df in tests.items():
        probs = predict(model, encode_split(df, tokenizer, tasks, max_length=max_length), tasks,
                        batch_size=64)
        out[name] = {t: auroc(df[TASKS[t].label_column].to_numpy(), probs[t]) for t in tasks}
    return out


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


def batch_size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected a batch size >= 1, or 0 to leave the "
                                         "default model out")
    return value


def share(value: float, ceiling: float) -> float:
    return (value - 0.5) / (ceiling - 0.5) if ceiling > 0.5 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-length", type=int, default=128,
                        help="tokens read per note (the default run reads 128)")
    parser.add_argument("--base", default="all-MiniLM-L6-v2", help="whose tokens are counted")
    parser.add_argument("--model-batch", type=batch_size, default=64,
                        help="batch size of the centrally trained default model (0: leave it out)")
    args = parser.parse_args(argv)
    own_length = ClientSettings.from_run_config(default_run_config()).model.max_length
    if args.model_batch and args.max_length != own_length:
        parser.error(f"--max-length {args.max_length}: the default model reads {own_length} "
                     "tokens; add --model-batch 0 to leave it out at another length")
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
    model = None
    if args.model_batch > 0:
        model = central_model(train, tests, consortium.tasks,
                              examples=federation_examples(consortium),
                              batch_size=args.model_batch, max_length=args.max_length)
    readers = ["facts", "tfidf"] + (["model"] if model else [])
    headings = "".join(f" {READERS[key][0]:>8s}" for key in readers)
    print(f"{'task':12s} {'note ceiling':>12s}{headings} | {'ext. ceiling':>12s}{headings}")
    rows = []
    for task in consortium.tasks:
        sources = {"facts": perfect_reader(task, train, tests, tokenizer, args.max_length),
                   "tfidf": tfidf_task(task, train_cut, cut)}
        if model:
            sources["model"] = {n: model[n][task] for n in model}
        sources["ceiling"] = {n: ceiling[n][task] for n in ceiling}
        row = {}
        for key, source in sources.items():
            row[key] = float(np.mean([source[n] for n in training]))
            row["ext_" + key] = float(np.mean([source[n] for n in external]))
        rows.append(row)
        print_row(task, row, readers)
    macro = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    print_row("macro", macro, readers)
    print("share of the way from chance to the note ceiling (training sites, macro): "
          + ", ".join(f"{READERS[key][1]} {share(macro[key], macro['ceiling']):.2f}"
                      for key in readers))
    return 0


def print_row(name: str, row: dict[str, float], readers: list[str]) -> None:
    print(f"{name:12s} {row['ceiling']:12.3f}" + "".join(f" {row[k]:8.3f}" for k in readers)
          + f" | {row['ext_ceiling']:12.3f}" + "".join(f" {row['ext_' + k]:8.3f}" for k in readers))


if __name__ == "__main__":
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--max-length", type=int, default=128)
    _length = _results.parse_known_args()[0].max_length
    raise SystemExit(record_printed("reachable" if _length == 128 else f"reachable_{_length}",
                                    __doc__.splitlines()[0], main, script="reachable.py"))

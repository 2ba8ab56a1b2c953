"""The note-level ceiling: the Bayes posterior of a label given exactly the facts a note states.

The oracle AUROC scores the generator's true probabilities, which depend on latent factors no note
states (frailty, what the author left out, facts past the cut). No model reading the note can reach
it, so "gap closed" measured against it blames training for what the notes never said. The note-level
ceiling is the best any reader of the note's first `max-length` tokens could do: the AUROC of
P(label | the facts stated in those tokens).

That posterior is estimated without knowing how the generator marginalises its latents. By the tower
property, E[p_oracle | stated facts] = E[E[y | latents] | stated facts] = P(y | stated facts), so a
regression of the oracle probabilities on the stated facts targets it directly, with less noise than
a regression on the sampled labels. The regression is a (multinomial) logistic regression on a
one-hot bag of stated features, fitted to the oracle's soft targets by replicating each row once per
class with the class's probability as its sample weight: its cross-entropy is minimised by the
conditional mean, so with enough rows it recovers P(y | facts) wherever that is additive on the
logit scale, as the generator's own models are. Rows are fitted on a site's train and validation
splits and the ceiling is measured on its test split, out of sample, like the model it bounds.

Pure numpy and scikit-learn: the features arrive as sets of `key=value` strings
(`sites.synthetic.stated_facts`), whoever decided which facts were read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

REGULARISATION_C = 10.0
"""Inverse L2 strength of the ceiling's logistic regression (scikit-learn's `C`). Weak: the
ceiling is a property of the data, not a model to be kept small; enough to keep a feature seen in
a handful of rows (or always with one outcome) from an infinite coefficient."""
CROSS_FIT_FOLDS = 5
"""Folds for a site with no rows to fit on (an external site holds only a test split)."""


def _vocabulary(features: Sequence[Collection[str]]) -> dict[str, int]:
    return {f: i for i, f in enumerate(sorted({f for row in features for f in row}))}


def _one_hot(features: Sequence[Collection[str]], vocabulary: dict[str, int]) -> np.ndarray:
    """[N, F] indicators; a feature outside `vocabulary` (never seen in the fit rows) is ignored."""
    x = np.zeros((len(features), len(vocabulary)), dtype=np.float64)
    for row, stated in enumerate(features):
        x[row, [vocabulary[f] for f in stated if f in vocabulary]] = 1.0
    return x


def _check_oracle(oracle: np.ndarray, rows: int) -> np.ndarray:
    oracle = np.asarray(oracle, dtype=np.float64)
    if oracle.ndim != 2 or oracle.shape[0] != rows or oracle.shape[1] < 2:
        raise ValueError(f"`fit_oracle` has shape {oracle.shape}; expected [{rows}, K>=2] "
                         "(one row of class probabilities per fit row)")
    if oracle.size and (not np.all(np.isfinite(oracle)) or oracle.min() < 0):
        raise ValueError("`fit_oracle` holds a negative or non-finite probability; expected the "
                         "generator's class probabilities")
    return oracle


def note_ceiling_probs(fit_features: Sequence[Collection[str]], fit_oracle: np.ndarray,
                       features: Sequence[Collection[str]], *,
                       c: float = REGULARISATION_C) -> np.ndarray:
    """P(label | stated features) [M, K] for the rows `features`, estimated from the fit rows'
    stated features and oracle probabilities [N, K] (see the module docstring).

    Where no fit row states any feature, nothing distinguishes one note from another: every row
    gets the fit rows' mean oracle probability (an AUROC of 0.5)."""
    from sklearn.linear_model import LogisticRegression

    if not len(fit_features):
        raise ValueError("no fit rows; expected the stated features and oracle probabilities of "
                         "at least one encounter")
    oracle = _check_oracle(fit_oracle, len(fit_features))
    k = oracle.shape[1]
    vocabulary = _vocabulary(fit_features)
    if not vocabulary:
        prior = oracle.mean(axis=0) / oracle.mean(axis=0).sum()
        return np.tile(prior, (len(features), 1))
    x = _one_hot(fit_features, vocabulary)
    # One copy of each row per class, weighted by that class's probability: the weighted
    # cross-entropy is the soft-target cross-entropy.
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(np.repeat(x, k, axis=0), np.tile(np.arange(k), len(x)),
              sample_weight=oracle.reshape(-1))
    probs = np.zeros((len(features), k), dtype=np.float64)
    if len(features):
        probs[:, model.classes_] = model.predict_proba(_one_hot(features, vocabulary))
    return probs


def cross_fitted_probs(features: Sequence[Collection[str]], oracle: np.ndarray,
                       groups: Sequence[int] | np.ndarray, *, folds: int = CROSS_FIT_FOLDS,
                       c: float = REGULARISATION_C) -> np.ndarray:
    """`note_ceiling_probs` for rows that have no separate fit rows: each fold of rows predicted
    by a fit on the others, so every row is still scored out of sample. `groups` (e.g. patient ids)
    keep a group's rows in one fold. Fewer than two groups: fitted on the rows themselves."""
    groups = np.asarray(groups)
    oracle = _check_oracle(oracle, len(features))
    if len(groups) != len(features):
        raise ValueError(f"`groups` has {len(groups)} entries for {len(features)} rows")
    _, codes = np.unique(groups, return_inverse=True)
    fold_of = codes % max(1, min(folds, codes.max(initial=-1) + 1))
    probs = np.zeros(oracle.shape, dtype=np.float64)
    rows = np.arange(len(features))
    if len(np.unique(fold_of)) < 2:
        return note_ceiling_probs(features, oracle, features, c=c) if len(features) else probs
    for fold in np.unique(fold_of):
        held, fit = rows[fold_of == fold], rows[fold_of != fold]
        probs[held] = note_ceiling_probs([features[i] for i in fit], oracle[fit],
                                         [features[i] for i in held], c=c)
    return probs

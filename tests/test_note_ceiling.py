"""The note-level ceiling's estimate of P(label | stated facts) (sites/synthetic/note_ceiling.py).

The toy: a label whose true probability is sigmoid(a[A] + b[B] + z[Z]) of two categorical facts A
and B and a latent Z no note states. A is always stated, B in a share of the notes. The exact
posterior given what a note states averages the sigmoid over Z (and over B where B is unstated), so
the estimate can be checked against the true Bayes AUROC on the same labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sites.synthetic.note_ceiling import cross_fitted_probs, note_ceiling_probs

A_EFFECT = np.array([-2.5, -1.5, -0.5])
B_EFFECT = np.array([0.0, 1.2])
LATENT = np.array([-1.2, 1.2])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def toy(n: int, seed: int, share_b_stated: float):
    """(stated features per row, oracle [n, 2], labels, true posterior given the stated facts)."""
    rng = np.random.default_rng(seed)
    a, b, z = rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    b_stated = rng.random(n) < share_b_stated
    p = _sigmoid(A_EFFECT[a] + B_EFFECT[b] + LATENT[z])
    y = (rng.random(n) < p).astype(int)
    given_b = np.mean([_sigmoid(A_EFFECT[a] + B_EFFECT[b] + v) for v in LATENT], axis=0)
    without_b = np.mean([_sigmoid(A_EFFECT[a] + u + v) for u in B_EFFECT for v in LATENT], axis=0)
    posterior = np.where(b_stated, given_b, without_b)
    features = [frozenset({f"a={i}"} | ({f"b={j}"} if s else set()))
                for i, j, s in zip(a, b, b_stated)]
    return features, np.column_stack([1 - p, p]), y, posterior


def test_estimate_matches_the_true_posterior_and_stays_below_the_oracle() -> None:
    fit_features, fit_oracle, _, _ = toy(3000, seed=0, share_b_stated=0.7)
    features, oracle, y, posterior = toy(20000, seed=1, share_b_stated=0.7)
    estimate = note_ceiling_probs(fit_features, fit_oracle, features)
    assert estimate.shape == (20000, 2)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0)
    assert np.abs(estimate[:, 1] - posterior).max() < 0.05
    bayes = roc_auc_score(y, posterior)
    assert roc_auc_score(y, estimate[:, 1]) == pytest.approx(bayes, abs=0.01)
    assert bayes < roc_auc_score(y, oracle[:, 1]) - 0.05  # the latent Z is never stated


def test_hiding_a_fact_lowers_the_ceiling() -> None:
    aurocs = {}
    for share in (1.0, 0.0):
        fit_features, fit_oracle, _, _ = toy(3000, seed=0, share_b_stated=share)
        features, _, y, _ = toy(20000, seed=1, share_b_stated=share)
        aurocs[share] = roc_auc_score(y, note_ceiling_probs(fit_features, fit_oracle, features)[:, 1])
    assert aurocs[0.0] < aurocs[1.0] - 0.02


def test_no_fact_stated_anywhere_gives_the_mean_probability_everywhere() -> None:
    _, fit_oracle, _, _ = toy(500, seed=0, share_b_stated=1.0)
    _, _, y, _ = toy(1000, seed=1, share_b_stated=1.0)
    estimate = note_ceiling_probs([frozenset()] * 500, fit_oracle, [frozenset()] * 1000)
    np.testing.assert_allclose(estimate, np.tile(fit_oracle.mean(axis=0), (1000, 1)))
    assert roc_auc_score(y, estimate[:, 1]) == 0.5


def test_a_feature_unseen_in_the_fit_rows_is_ignored() -> None:
    fit_features, fit_oracle, _, _ = toy(2000, seed=0, share_b_stated=1.0)
    plain = note_ceiling_probs(fit_features, fit_oracle, [frozenset({"a=2", "b=1"})])
    extra = note_ceiling_probs(fit_features, fit_oracle, [frozenset({"a=2", "b=1", "new=yes"})])
    np.testing.assert_array_equal(plain, extra)


def test_multiclass_soft_targets_recover_a_three_class_posterior() -> None:
    rng = np.random.default_rng(0)
    truth = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7]])
    fact = rng.integers(0, 3, 3000)
    features = [frozenset({f"fact={i}"}) for i in fact]
    estimate = note_ceiling_probs(features, truth[fact], [frozenset({f"fact={i}"}) for i in range(3)])
    np.testing.assert_allclose(estimate, truth, atol=0.01)


def test_cross_fitting_scores_every_row_out_of_sample() -> None:
    features, oracle, y, posterior = toy(4000, seed=0, share_b_stated=0.7)
    groups = np.arange(4000) // 2  # two rows per patient, kept in one fold
    estimate = cross_fitted_probs(features, oracle, groups)
    assert estimate.shape == (4000, 2)
    assert roc_auc_score(y, estimate[:, 1]) == pytest.approx(roc_auc_score(y, posterior), abs=0.01)
    # one group only: no other rows to fit on, so the rows are fitted on themselves
    single = cross_fitted_probs(features[:50], oracle[:50], np.zeros(50))
    np.testing.assert_allclose(single, note_ceiling_probs(features[:50], oracle[:50], features[:50]))


@pytest.mark.parametrize(
    ("fit_oracle", "match"),
    [(np.full((3, 1), 0.5), r"shape \(3, 1\); expected \[3, K>=2\]"),
     (np.array([[0.5, 0.5], [1.2, -0.2], [0.5, 0.5]]), "negative or non-finite")],
)
def test_bad_oracle_is_refused(fit_oracle, match) -> None:
    with pytest.raises(ValueError, match=match):
        note_ceiling_probs([frozenset({"a=1"})] * 3, fit_oracle, [frozenset()])


def test_no_fit_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="no fit rows"):
        note_ceiling_probs([], np.zeros((0, 2)), [frozenset({"a=1"})])

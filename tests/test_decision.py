import numpy as np
import pytest

from dyfip.decision import (decide, pad_sets, restricted_argmax, set_sizes, sets_with_label,
                             softmax)


def test_exit_when_confident_else_sorted_topk():
    logits = np.array([[10.0, 0, 0, 0], [1.0, 3.0, 2.9, 0]])
    d = decide(logits, k=2, tau=0.9)
    assert d.exit.tolist() == [True, False]
    assert d.branch_pred.tolist() == [0, 1]
    assert d.subsets[1].tolist() == [1, 2]
    assert np.allclose(d.confidence, softmax(logits).max(1))


def test_ties_prefer_lower_class():
    d = decide(np.array([[1.0, 2.0, 2.0, 2.0]]), k=2, tau=0.99)
    assert d.branch_pred[0] == 1 and d.subsets[0].tolist() == [1, 2]
    assert restricted_argmax(np.array([[5.0, 1.0, 1.0, 9.0]]), np.array([[1, 2]]))[0] == 1


def test_restricted_argmax_ignores_classes_outside_subset():
    logits = np.array([[9.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    assert restricted_argmax(logits, np.array([[1, 2], [0, 2]])).tolist() == [2, 2]


def test_bad_k_and_shape():
    with pytest.raises(ValueError, match="k=5"):
        decide(np.zeros((1, 4)), k=5, tau=0.5)
    with pytest.raises(ValueError, match="shape"):
        decide(np.zeros(4), k=1, tau=0.5)


def test_adaptive_sets_grow_until_they_hold_the_mass():
    # probabilities ~ [0.5, 0.3, 0.15, 0.05] and [0.6, 0.38, 0.01, 0.01]
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.6, 0.38, 0.01, 0.01]]))
    d = decide(logits, k=2, tau=0.9, k_max=3, set_mass=0.95)
    assert d.set_sizes.tolist() == [3, 2]
    assert d.subsets.tolist() == [[0, 1, 2], [0, 1, 1]]  # padded by repeating the largest
    assert decide(logits, k=2, tau=0.9).subsets.tolist() == [[0, 1], [0, 1]]
    # a padded row is a set: the argmax over it ignores the other classes
    assert restricted_argmax(np.array([[0.0, 1.0, 5.0, 9.0]]), d.subsets[1:])[0] == 1


def test_pad_sets_and_sizes_round_trip():
    ranked = np.array([[3, 0, 2], [1, 2, 0]])
    padded = pad_sets(ranked, np.array([2, 3]))
    assert padded.tolist() == [[0, 3, 3], [0, 1, 2]]
    assert set_sizes(padded).tolist() == [2, 3]


def test_sets_with_label_force_the_label_into_the_set():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    sets = sets_with_label(logits, np.array([3, 2]), k=2, k_max=3, set_mass=0.95)
    assert sets.tolist() == [[0, 1, 3], [0, 2, 2]]  # last-ranked member replaced
    drawn = sets_with_label(np.zeros((200, 4)), np.zeros(200, int), 2, 3, 0.5,
                            np.random.default_rng(0))
    assert set(set_sizes(drawn)) == {2, 3} and (drawn == 0).any(axis=1).all()


def test_bad_set_rule():
    with pytest.raises(ValueError, match="k_max=2"):
        decide(np.zeros((1, 4)), k=3, tau=0.5, k_max=2)


def test_exit_exactly_at_tau_and_not_just_below():
    """The rule is ``top probability >= tau``. softmax([0, 0]) = [0.5, 0.5] and
    softmax([0, 0, 0, 0]) = [0.25] * 4 exactly, so the boundary is exact."""
    two, four = np.zeros((1, 2)), np.zeros((1, 4))
    at = decide(two, k=1, tau=0.5)
    assert at.confidence.tolist() == [0.5] and at.exit.tolist() == [True]
    assert at.branch_pred.tolist() == [0]  # tie: the lower class
    assert decide(two, k=1, tau=np.nextafter(0.5, 1.0)).exit.tolist() == [False]
    assert decide(two, k=1, tau=np.nextafter(0.5, 0.0)).exit.tolist() == [True]
    assert decide(four, k=2, tau=0.25).exit.tolist() == [True]
    below = decide(four, k=2, tau=0.2500001)
    assert below.exit.tolist() == [False] and below.subsets.tolist() == [[0, 1]]
    # per image in one batch: 0.5 at tau exits, 0.25 below it does not
    batch = decide(np.array([[0.0, 0.0, -np.inf, -np.inf], [0.0, 0.0, 0.0, 0.0]]), k=2, tau=0.5)
    assert batch.confidence.tolist() == [0.5, 0.25] and batch.exit.tolist() == [True, False]

import numpy as np
import pytest

from dyfip.decision import decide, restricted_argmax, softmax


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

"""The DyFiP decision rule on the coarse branch's logits (numpy only: host and board)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    """Per image: exit early with ``branch_pred``, or run stage B restricted to ``subsets``."""

    exit: np.ndarray  # bool (N,)
    branch_pred: np.ndarray  # int (N,), the branch's top-1 class
    subsets: np.ndarray  # int (N, k_max), candidate classes (see :func:`pad_sets`)
    confidence: np.ndarray  # float (N,), the branch's top softmax probability

    @property
    def set_sizes(self) -> np.ndarray:
        """Number of candidate classes per image."""
        return set_sizes(self.subsets)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def pad_sets(ranked: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Candidate sets as fixed-width rows: the first ``sizes[i]`` classes of ``ranked[i]``,
    sorted ascending, padded by repeating the largest. A row is read as the *set* of its
    entries, so every set operation (masking, argmax over S) works on padded rows as is."""
    ranked = np.asarray(ranked)
    members = np.arange(ranked.shape[1])[None, :] < np.asarray(sizes)[:, None]
    largest = np.where(members, ranked, ranked.min(initial=0) - 1).max(axis=1, keepdims=True)
    return np.sort(np.where(members, ranked, largest), axis=1)


def set_sizes(subsets: np.ndarray) -> np.ndarray:
    """Distinct classes per padded row of :func:`pad_sets`."""
    subsets = np.asarray(subsets)
    return 1 + (np.diff(np.sort(subsets, axis=1), axis=1) != 0).sum(axis=1)


def adaptive_sizes(probs_ranked: np.ndarray, k: int, k_max: int, mass: float) -> np.ndarray:
    """Per image the smallest set size whose top classes hold ``mass`` of the branch's
    probability, clipped to ``k..k_max`` (``k_max == k``: always ``k``)."""
    cum = np.cumsum(probs_ranked, axis=1)
    reached = (cum >= mass - 1e-12).argmax(axis=1) + 1
    reached[cum[:, -1] < mass - 1e-12] = probs_ranked.shape[1]
    return np.clip(reached, k, k_max)


def rank_classes(branch_logits: np.ndarray, k: int, k_max: int, set_mass: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes by falling branch logit (ties: lower index), their probabilities in that
    order, and each image's candidate-set size (:func:`adaptive_sizes`)."""
    logits = np.asarray(branch_logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"branch logits must be (N, classes); got shape {logits.shape}")
    if not 1 <= k <= k_max <= logits.shape[1]:
        raise ValueError(f"k={k}, k_max={k_max} must satisfy 1 <= k <= k_max <= "
                         f"{logits.shape[1]} classes")
    order = np.argsort(-logits, axis=1, kind="stable")
    ranked = np.take_along_axis(softmax(logits), order, axis=1)
    return order, ranked, adaptive_sizes(ranked, k, k_max, set_mass)


def decide(branch_logits: np.ndarray, k: int, tau: float, k_max: int | None = None,
           set_mass: float = 1.0) -> Decision:
    """Exit when the top probability >= ``tau``; otherwise take the top classes: ``k`` of
    them, or (``k_max > k``) as many as hold ``set_mass`` of the probability, ``k..k_max``.

    Ties are broken toward the lower class index, as ``argmax`` does.
    """
    k_max = k if k_max is None else k_max
    order, ranked, sizes = rank_classes(branch_logits, k, k_max, set_mass)
    return Decision(exit=ranked[:, 0] >= tau, branch_pred=order[:, 0],
                    subsets=pad_sets(order[:, :k_max], sizes), confidence=ranked[:, 0])


def sets_with_label(branch_logits: np.ndarray, labels: np.ndarray, k: int,
                    k_max: int | None = None, set_mass: float = 1.0,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """The decision rule's candidate sets with the label forced in (training): when the
    label is missing it replaces the set's last-ranked class. With ``rng`` each set is at
    least a uniformly drawn size in ``k..k_max``, so that the larger sets, rare on
    training images the branch knows well, are trained too."""
    k_max = k if k_max is None else k_max
    order, _, sizes = rank_classes(branch_logits, k, k_max, set_mass)
    if rng is not None:
        sizes = np.maximum(sizes, rng.integers(k, k_max + 1, len(sizes)))
    top = order[:, :k_max].copy()
    rows = np.arange(len(top))
    inside = (top == np.asarray(labels)[:, None]) & (np.arange(k_max)[None] < sizes[:, None])
    missing = ~inside.any(axis=1)
    top[rows[missing], sizes[missing] - 1] = np.asarray(labels)[missing]
    return pad_sets(top, sizes)


def restricted_argmax(logits: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Argmax of each row of ``logits`` over the classes in its row of ``subsets``."""
    logits = np.asarray(logits, dtype=np.float64)
    allowed = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(allowed, np.asarray(subsets), True, axis=1)
    return np.where(allowed, logits, -np.inf).argmax(axis=1)

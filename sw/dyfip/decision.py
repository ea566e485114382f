"""The DyFiP decision rule on the coarse branch's logits (numpy only: host and board)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    """Per image: exit early with ``branch_pred``, or run stage B restricted to ``subsets``."""

    exit: np.ndarray  # bool (N,)
    branch_pred: np.ndarray  # int (N,), the branch's top-1 class
    subsets: np.ndarray  # int (N, k), the top-k classes sorted ascending
    confidence: np.ndarray  # float (N,), the branch's top softmax probability


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decide(branch_logits: np.ndarray, k: int, tau: float) -> Decision:
    """Exit when the top probability >= ``tau``; otherwise take the top-``k`` classes.

    Ties are broken toward the lower class index, as ``argmax`` does.
    """
    logits = np.asarray(branch_logits)
    if logits.ndim != 2:
        raise ValueError(f"branch logits must be (N, classes); got shape {logits.shape}")
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k={k} must be in 1..{logits.shape[1]} classes")
    probs = softmax(logits)
    order = np.argsort(-logits, axis=1, kind="stable")
    confidence = probs[np.arange(len(probs)), order[:, 0]]
    return Decision(exit=confidence >= tau, branch_pred=order[:, 0],
                    subsets=np.sort(order[:, :k], axis=1), confidence=confidence)


def restricted_argmax(logits: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Argmax of each row of ``logits`` over the classes in its row of ``subsets``."""
    logits = np.asarray(logits, dtype=np.float64)
    allowed = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(allowed, np.asarray(subsets), True, axis=1)
    return np.where(allowed, logits, -np.inf).argmax(axis=1)

"""The host's share of DyFiP: branch, exit/top-k decision and mask lookup (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dataflow import stage_cycles
from ..decision import Decision, decide
from .deployment import Deployment


@dataclass(frozen=True)
class HostStep:
    """Per batch: the decision and, per image, the mask-table row (-1 for exits)."""

    decision: Decision
    rows: np.ndarray  # int (N,)


class HostPolicy:
    """Branch + decision + mask lookup, with the table pre-flattened to mask-stream rows."""

    def __init__(self, dep: Deployment):
        self.dep, self.k, self.tau, self.branch = dep, dep.k, dep.tau, dep.branch
        table = dep.table
        self.k_max, self.set_mass = table.k_max, dep.set_mass
        self.mask_rows = np.concatenate(table.masks, axis=1).astype(np.uint8)  # (n, sum F)
        self.index = {tuple(int(c) for c in s): i for i, s in enumerate(table.subsets)}
        self.bounds = np.cumsum([0, *table.filters])

    def step(self, features: np.ndarray) -> HostStep:
        """Integer NHWC stage-A features of N images -> decision + mask rows."""
        dec = decide(self.branch.logits(features), self.k, self.tau, self.k_max,
                     self.set_mass)
        index = self.index
        rows = np.array([-1 if e else index[tuple(s.tolist())]
                         for e, s in zip(dec.exit, dec.subsets)], dtype=np.int64)
        return HostStep(dec, rows)

    def masks(self, rows: np.ndarray) -> np.ndarray:
        """Mask streams ``(N, sum F)`` for table rows (all zero where row is -1)."""
        out = self.mask_rows[np.maximum(rows, 0)].copy()
        out[rows < 0] = 0
        return out

    def layer_masks(self, mask: np.ndarray) -> list[np.ndarray]:
        """One mask stream -> per prunable layer bool filter enables."""
        return [mask[lo:hi].astype(bool) for lo, hi in zip(self.bounds[:-1], self.bounds[1:])]


class CycleModel:
    """Modelled cycles per path from ``accel/layers.json`` (dyfip.dataflow.stage_cycles)."""

    def __init__(self, dep: Deployment, policy: HostPolicy):
        a, b = dep.stage_spec("stage_a"), dep.stage_spec("stage_b")
        self.stage_a = stage_cycles(a)
        self.stage_b_full = stage_cycles(b)
        self.stage_b_row = np.array([stage_cycles(b, policy.layer_masks(m))
                                     for m in policy.mask_rows], dtype=np.int64)
        self.bottleneck_full = max(stage_cycles(a, mode="bottleneck"),
                                   stage_cycles(b, mode="bottleneck"))

    @property
    def full(self) -> int:
        return self.stage_a + self.stage_b_full

    def per_image(self, rows: np.ndarray) -> np.ndarray:
        """Stage A, plus stage B under its mask unless the image exited (row -1)."""
        rows = np.asarray(rows)
        b = np.where(rows >= 0, self.stage_b_row[np.maximum(rows, 0)], 0)
        return self.stage_a + b

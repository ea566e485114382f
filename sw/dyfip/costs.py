"""MACs and modelled cycles of every decision path (numpy only).

A network is a list of :class:`LayerGeometry` (matrix-vector layers in order); stage-B masks
switch off filters of a layer and, with them, the input channels of the next layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import Folding, masked_mvau_cycles


@dataclass(frozen=True)
class LayerGeometry:
    """One matrix-vector layer: ``out_pixels`` x (MH x MW) with ``MW = kk * in_channels``."""

    name: str
    stage: str  # "a", "branch" or "b"
    in_channels: int
    out_channels: int
    kk: int  # kernel positions (9 for a 3x3 conv; H*W for a classifier on a feature map)
    out_pixels: int
    prunable: bool = False

    def macs(self, filters_on: int | None = None, channels_on: int | None = None) -> int:
        f = self.out_channels if filters_on is None else filters_on
        c = self.in_channels if channels_on is None else channels_on
        return self.out_pixels * self.kk * c * f


def largest_divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def default_folding(layer: LayerGeometry, pe_cap: int, simd_cap: int) -> Folding:
    return Folding(mh=layer.out_channels, mw=layer.kk * layer.in_channels,
                   pe=largest_divisor_at_most(layer.out_channels, pe_cap),
                   simd=largest_divisor_at_most(layer.in_channels, simd_cap), kk=layer.kk)


@dataclass(frozen=True)
class PathCost:
    macs: int
    cycles: int

    def __add__(self, other: "PathCost") -> "PathCost":
        return PathCost(self.macs + other.macs, self.cycles + other.cycles)


class CostModel:
    """Cost of stage A, the branch and stage B under any masks, for one folding."""

    def __init__(self, geometry: list[LayerGeometry], foldings: dict[str, Folding]):
        self.geometry = geometry
        self.foldings = foldings
        self.prunable = [g for g in geometry if g.prunable]

    @classmethod
    def with_default_folding(cls, geometry: list[LayerGeometry], pe_cap: int, simd_cap: int
                             ) -> "CostModel":
        return cls(geometry, {g.name: default_folding(g, pe_cap, simd_cap) for g in geometry})

    def _stage(self, stage: str) -> PathCost:
        layers = [g for g in self.geometry if g.stage == stage]
        return PathCost(sum(g.macs() for g in layers),
                        sum(masked_mvau_cycles(self.foldings[g.name], pixels=g.out_pixels)
                            for g in layers))

    @property
    def stage_a(self) -> PathCost:
        return self._stage("a")

    @property
    def branch(self) -> PathCost:
        return self._stage("branch")

    def stage_b(self, masks: list[np.ndarray] | None = None) -> PathCost:
        """Stage B (and head) with one bool mask per prunable layer (None: all enabled)."""
        if masks is not None and len(masks) != len(self.prunable):
            raise ValueError(f"expected {len(self.prunable)} layer masks, got {len(masks)}")
        macs = cycles = 0
        channels_on = None
        it = iter(masks) if masks is not None else None
        for g in (g for g in self.geometry if g.stage == "b"):
            fold = self.foldings[g.name]
            filters_on = None
            if g.prunable and it is not None:
                filters_on = np.asarray(next(it), dtype=bool)
                if len(filters_on) != g.out_channels:
                    raise ValueError(f"layer {g.name}: mask of length {len(filters_on)} for "
                                     f"{g.out_channels} filters")
            macs += g.macs(None if filters_on is None else int(filters_on.sum()),
                           None if channels_on is None else int(channels_on.sum()))
            cycles += masked_mvau_cycles(fold, filters_on, channels_on, g.out_pixels)
            channels_on = filters_on
        return PathCost(macs, cycles)

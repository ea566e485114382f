"""MACs and modelled cycles of every decision path (numpy only).

MACs come from the network's :class:`LayerGeometry`; cycles from a stage description in the
format of ``estimates.json`` (one dict per layer: op, MH, MW, PE, SIMD, KK, pixels, cycles),
either the FINN build's own folding or a default folding when no build is at hand. Both are
evaluated by :func:`dyfip.dataflow.stage_cycles`, the accelerator's cycle model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataflow import stage_cycles
from .kernels import Folding


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


def describe_layers(layers: list[LayerGeometry], pe_cap: int, simd_cap: int) -> dict:
    """A stage description (estimates.json format) of ``layers`` under a default folding."""
    out = []
    for g in layers:
        f = default_folding(g, pe_cap, simd_cap)
        out.append({"layer": g.name, "op": "MaskedMVAU" if g.prunable else "MVAU",
                    "MH": f.mh, "MW": f.mw, "PE": f.pe, "SIMD": f.simd, "KK": f.kk,
                    "pixels": g.out_pixels,
                    "cycles": g.out_pixels * f.neuron_folds * f.synapse_folds})
    return {"layers": out}


def masked_layers(stage: dict) -> list[dict]:
    """The filter-enable layers of a stage description, in order."""
    return [la for la in stage["layers"] if la["op"] == "MaskedMVAU"]


def mask_block_sizes(stage: dict) -> dict[str, int]:
    """Per filter-enable layer (by name, in order), the filters one input fold (SIMD
    channels) of the next filter-enable layer reads: masks confined to the fewest such
    blocks let that layer skip the same number of input folds for every mask. The PE (no
    constraint) where SIMD is not a multiple of it, and for the last layer."""
    layers = masked_layers(stage)
    blocks = {}
    for la, nxt in zip(layers, layers[1:] + [None]):
        simd = nxt["SIMD"] if nxt is not None else la["PE"]
        blocks[la["layer"]] = (simd if simd % la["PE"] == 0 and la["MH"] % simd == 0
                               else la["PE"])
    return blocks


@dataclass(frozen=True)
class PathCost:
    macs: int
    cycles: int

    def __add__(self, other: "PathCost") -> "PathCost":
        return PathCost(self.macs + other.macs, self.cycles + other.cycles)

    @staticmethod
    def worst(costs: list["PathCost"]) -> "PathCost":
        """Each figure's own maximum over ``costs`` (the most MACs and the most cycles
        need not be the same path)."""
        return PathCost(max(c.macs for c in costs), max(c.cycles for c in costs))


class CostModel:
    """Cost of stage A, the branch and stage B under any masks."""

    def __init__(self, geometry: list[LayerGeometry], stages: dict[str, dict], source: str):
        missing = {"stage_a", "branch", "stage_b"} - set(stages)
        if missing:
            raise ValueError(f"cost model needs stage descriptions for {sorted(missing)}")
        self.geometry = geometry
        self.stages = stages
        self.source = source  # where the folding comes from, for reports

    @classmethod
    def from_folding(cls, geometry: list[LayerGeometry], pe_cap: int, simd_cap: int,
                     estimates: dict | None = None) -> "CostModel":
        """Stages A and B from a FINN build's ``estimates`` when given, else default folding.

        The branch runs on the host (its time is the driver's measured host overhead), so it
        adds MACs but no accelerator cycles."""
        by_stage = {s: [g for g in geometry if g.stage == s] for s in ("a", "b")}
        stages: dict[str, dict] = {"branch": {"layers": []}}
        if estimates is not None:
            stages.update(stage_a=estimates["stages"]["stage_a"],
                          stage_b=estimates["stages"]["stage_b"])
            source = f"FINN folding for {estimates.get('board', '?')}"
        else:
            stages.update(stage_a=describe_layers(by_stage["a"], pe_cap, simd_cap),
                          stage_b=describe_layers(by_stage["b"], pe_cap, simd_cap))
            source = f"default folding PE<={pe_cap}, SIMD<={simd_cap}"
        return cls(geometry, stages, source)

    def _full(self, stage: str, key: str) -> PathCost:
        return PathCost(sum(g.macs() for g in self.geometry if g.stage == stage),
                        stage_cycles(self.stages[key]))

    @property
    def stage_a(self) -> PathCost:
        return self._full("a", "stage_a")

    @property
    def branch(self) -> PathCost:
        return self._full("branch", "branch")

    @property
    def group_sizes(self) -> list[int]:
        """Mask granularity: the PE of every prunable layer."""
        return [la["PE"] for la in masked_layers(self.stages["stage_b"])]

    @property
    def block_sizes(self) -> list[int]:
        """Mask blocks of every prunable layer (see :func:`mask_block_sizes`)."""
        return list(mask_block_sizes(self.stages["stage_b"]).values())

    def stage_b(self, masks: list[np.ndarray] | None = None) -> PathCost:
        """Stage B (and head) with one bool mask per prunable layer (None: all enabled).

        MACs count only enabled filters and enabled input channels (ideal compute); cycles
        follow the accelerator, which skips folds only in its filter-enable layers.
        """
        n_prunable = sum(g.prunable for g in self.geometry)
        if masks is not None and len(masks) != n_prunable:
            raise ValueError(f"expected {n_prunable} layer masks, got {len(masks)}")
        macs = 0
        channels_on = None
        it = iter(masks) if masks is not None else None
        for g in (g for g in self.geometry if g.stage == "b"):
            filters_on = None
            if g.prunable and it is not None:
                filters_on = np.asarray(next(it), dtype=bool)
                if len(filters_on) != g.out_channels:
                    raise ValueError(f"layer {g.name}: mask of length {len(filters_on)} for "
                                     f"{g.out_channels} filters")
            macs += g.macs(None if filters_on is None else int(filters_on.sum()),
                           None if channels_on is None else int(channels_on.sum()))
            channels_on = filters_on
        return PathCost(macs, stage_cycles(self.stages["stage_b"], masks))

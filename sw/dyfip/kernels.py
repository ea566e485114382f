"""Reference semantics and cycle cost of the filter-enable (masked) MVAU, numpy only.

This is the single definition that the FINN custom op (``hw/``), the RTL testbenches and the
simulated board all check against.

Layouts follow FINN's MatrixVectorActivation: the input of one output pixel is a vector of
``MW = KK * CH`` integers in (kernel position, channel) order with the channel fastest; the
weights are an ``(MW, MH)`` integer matrix; thresholds ``(MH, T)`` make an unsigned output that
counts the thresholds an accumulator reaches (FINN's MultiThreshold).

The mask of one image is ``[filter enables (MH) | input-channel enables (CH)]``. Disabled
filters output exact zeros; disabled input channels are skipped (treated as zero).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Folding:
    """Folding of one matrix-vector layer, as FINN's PE / SIMD attributes."""

    mh: int  # output neurons (filters)
    mw: int  # input vector length = kk * ch
    pe: int
    simd: int
    kk: int = 1  # kernel positions (K*K; 1 for fully connected)

    def __post_init__(self) -> None:
        if self.mw % self.kk:
            raise ValueError(f"MW={self.mw} is not a multiple of KK={self.kk}")
        if self.mh % self.pe:
            raise ValueError(f"PE={self.pe} does not divide MH={self.mh}")
        if self.ch % self.simd:
            raise ValueError(f"SIMD={self.simd} does not divide the {self.ch} input channels")

    @property
    def ch(self) -> int:
        return self.mw // self.kk

    @property
    def neuron_folds(self) -> int:
        return self.mh // self.pe

    @property
    def synapse_folds(self) -> int:
        return self.mw // self.simd


def split_mask(mask: np.ndarray, mh: int, ch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, MH + CH)`` 0/1 -> filter enables ``(N, MH)``, channel enables ``(N, CH)`` (bool)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape[1] != mh + ch:
        raise ValueError(f"mask must have shape (N, {mh + ch}) = (N, MH + CH); got {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("mask values must be 0 or 1")
    mask = mask.astype(bool)
    return mask[:, :mh], mask[:, mh:]


def masked_mvau(x: np.ndarray, weights: np.ndarray, thresholds: np.ndarray | None,
                mask: np.ndarray, kk: int = 1) -> np.ndarray:
    """Exact masked MVAU: ``x`` (N, P, MW) ints -> (N, P, MH) ints.

    With ``thresholds`` (MH, T) the output is the number of thresholds each accumulator
    reaches; without, the raw accumulator. Disabled filters give 0 in both cases.
    """
    x = np.asarray(x)
    weights = np.asarray(weights)
    if x.ndim != 3:
        raise ValueError(f"input must be (N, P, MW); got shape {x.shape}")
    if weights.ndim != 2:
        raise ValueError(f"weights must be (MW, MH); got shape {weights.shape}")
    mw, mh = weights.shape
    if x.shape[2] != mw:
        raise ValueError(f"input vector length {x.shape[2]} != MW={mw} of the weights")
    if mw % kk:
        raise ValueError(f"MW={mw} is not a multiple of KK={kk}")
    filt, chan = split_mask(mask, mh, mw // kk)
    if len(filt) != len(x):
        raise ValueError(f"{len(filt)} masks for {len(x)} images")
    keep_inputs = np.tile(chan, (1, kk))[:, None, :]  # (N, 1, MW)
    acc = np.einsum("npw,wh->nph", np.where(keep_inputs, x, 0).astype(np.int64),
                    weights.astype(np.int64))
    if thresholds is not None:
        thresholds = np.asarray(thresholds)
        if thresholds.ndim != 2 or thresholds.shape[0] != mh:
            raise ValueError(f"thresholds must be (MH={mh}, steps); got shape "
                             f"{thresholds.shape}")
        acc = (acc[..., None] >= thresholds[None, None]).sum(-1)
    return np.where(filt[:, None, :], acc, 0)


def enabled_folds(enables: np.ndarray, group: int) -> int:
    """Number of groups of ``group`` consecutive lanes with at least one enabled lane."""
    enables = np.asarray(enables, dtype=bool)
    return int(enables.reshape(-1, group).any(axis=1).sum())


def masked_mvau_cycles(fold: Folding, filter_enables: np.ndarray | None = None,
                       channel_enables: np.ndarray | None = None, pixels: int = 1) -> int:
    """Modelled cycles of one image through a masked MVAU (the RTL's schedule, cycle exact).

    Per output pixel: the input vector streams in once (``SF`` cycles, overlapped with the
    first enabled neuron fold); every further enabled neuron fold costs its enabled synapse
    folds, at least one cycle (its output word, also when every input channel is off); a
    disabled neuron fold costs one cycle (its zero output word). Without any enabled fold
    the input drains while the zero words go out: ``max(SF, NF)``. With all enables on this
    is FINN's ``NF * SF``. hw/dyfip_hw/rtl/masked_mvau.sv has no further per-fold, per-pixel or
    per-image overhead; only a one-off pipeline latency of 3 cycles to the first output
    (and 1 cycle when a mask word arrives after the image's first input word).
    """
    nf, sf = fold.neuron_folds, fold.synapse_folds
    if filter_enables is None:
        filter_enables = np.ones(fold.mh, bool)
    if channel_enables is None:
        channel_enables = np.ones(fold.ch, bool)
    if len(filter_enables) != fold.mh or len(channel_enables) != fold.ch:
        raise ValueError(f"enables of length {len(filter_enables)}/{len(channel_enables)} for "
                         f"MH={fold.mh}/CH={fold.ch}")
    nf_on = enabled_folds(filter_enables, fold.pe)
    sf_on = enabled_folds(channel_enables, fold.simd) * fold.kk
    if nf_on == 0:  # only stream the input in and the zero words out
        return pixels * max(sf, nf)
    return pixels * (sf + (nf_on - 1) * max(sf_on, 1) + (nf - nf_on))


def ideal_masked_cycles(fold: Folding, filter_enables: np.ndarray, channel_enables: np.ndarray,
                        pixels: int = 1) -> int:
    """DESIGN.md's compute-only model: enabled neuron folds x enabled synapse folds."""
    return pixels * enabled_folds(filter_enables, fold.pe) * (
        enabled_folds(channel_enables, fold.simd) * fold.kk)

"""numpy-only interpreter of DyFiP's folded FINN dataflow graphs (the simulated board's compute).

``dyfip build`` exports every stage accelerator into ``<bundle>/accel/``:

- ``layers.json``: per stage, its input/output tensors and the layer list in execution order;
  each layer has ``op`` (``FMPadding``, ``ConvolutionInputGenerator``, ``MVAU``,
  ``MaskedMVAU``, ``MaskSplit``, ``Pool``), input/output tensor names, shapes (NHWC),
  datatypes, folding (``PE``/``SIMD``), modelled ``cycles`` and op parameters;
- ``stage_a.npz`` / ``stage_b.npz``: integer weights ``<layer>.weights`` (MW, MH) and
  thresholds ``<layer>.thresholds`` (MH, T).

Formats (the accelerator's own streams, as FINN's driver sees them):

- stage A input ``pixels``: uint8 ``(N, H, W, C)`` (NHWC);
- stage A output: unsigned integer features ``(N, H', W', C')`` NHWC;
  real features = integers * ``feature_scale`` (NCHW for PyTorch: transpose (0, 3, 1, 2));
- stage B inputs: those integer features and ``mask`` ``(N, sum F_l)`` 0/1 (filter enables
  of every prunable layer, layer order, filter order of the network);
- stage B output: integer logits ``(N, classes)``; real logits = integers * ``logit_scale``.

Only numpy (and :mod:`dyfip.kernels`) is imported: this runs on the board image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bundle import read_json, read_npz
from .kernels import Folding, masked_mvau, masked_mvau_cycles

FORMAT_VERSION = 1
LAYERS_JSON = "layers.json"
BUILD_HINT = "(re)export the accelerator with 'dyfip build --estimate'"


def mask_word_bits(filters: Sequence[int], first_channels: int) -> list[int]:
    """Bits of each layer's word from :func:`split_stage_mask`: its filters, then its input
    channels (the previous layer's filters; ``first_channels`` for the first)."""
    return [int(f) + int(c) for f, c in zip(filters, [first_channels, *filters[:-1]])]


def split_stage_mask(mask: np.ndarray, filters: Sequence[int], first_channels: int
                     ) -> list[np.ndarray]:
    """``(N, sum F)`` 0/1 -> per layer ``(N, F_l + CH_l)`` ``[filters | channel enables]``.

    A layer's channel enables are the previous prunable layer's filter enables; the first
    layer's are all ones. (The ``MaskSplit`` op.)
    """
    mask = np.asarray(mask)
    total = int(sum(filters))
    if mask.ndim != 2 or mask.shape[1] != total:
        raise ValueError(f"stage mask must have shape (N, {total}) = (N, sum of filters "
                         f"{list(filters)}); got {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("stage mask values must be 0 or 1")
    mask = mask.astype(np.uint8)
    bounds = np.cumsum([0, *filters])
    out, prev = [], np.ones((len(mask), first_channels), np.uint8)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        out.append(np.concatenate([mask[:, lo:hi], prev], axis=1))
        prev = mask[:, lo:hi]
    return out


# -- op implementations: (layer dict, params npz, input arrays) -> output arrays -----------
def _fmpadding(layer: dict, params: Any, x: np.ndarray) -> np.ndarray:
    top, left, bottom, right = layer["padding"]
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _im2col(layer: dict, params: Any, x: np.ndarray) -> np.ndarray:
    """Sliding window, FINN's order: (kernel row, kernel col, channel), channel fastest."""
    (kh, kw), (sh, sw) = layer["kernel"], layer["stride"]
    (dh, dw) = layer.get("dilation", [1, 1])
    (oh, ow) = layer["ofm_dim"]
    n, c = x.shape[0], x.shape[3]
    out = np.empty((n, oh, ow, kh * kw * c), x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                      j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            k = (i * kw + j) * c
            out[..., k: k + c] = patch
    return out


def _pool(layer: dict, params: Any, x: np.ndarray) -> np.ndarray:
    if layer["function"] != "MaxPool":
        raise ValueError(f"layer {layer['name']}: pool function {layer['function']} unsupported")
    k2 = int(np.prod(layer["kernel"]))
    return x.reshape(*x.shape[:-1], k2, layer["channels"]).max(axis=-2)


def _thresholds(layer: dict, params: Any) -> np.ndarray | None:
    key = f"{layer['name']}.thresholds"
    if layer.get("no_activation", 0):
        return None
    thr = np.asarray(params[key], dtype=np.int64)
    return np.broadcast_to(thr, (layer["MH"], thr.shape[-1]))


def _mvau(layer: dict, params: Any, x: np.ndarray, mask: np.ndarray | None = None
          ) -> np.ndarray:
    n = x.shape[0]
    w = np.asarray(params[f"{layer['name']}.weights"], dtype=np.int64)
    flat = x.reshape(n, -1, layer["MW"]).astype(np.int64)
    thr = _thresholds(layer, params)
    if mask is None:
        acc = np.einsum("npw,wh->nph", flat, w)
        out = acc if thr is None else (acc[..., None] >= thr).sum(-1) + layer.get("act_val", 0)
    else:
        out = masked_mvau(flat, w, thr, mask, layer["KK"])
    return out.reshape(n, *layer["out_shape"][1:])


def _mask_split(layer: dict, params: Any, mask: np.ndarray) -> list[np.ndarray]:
    return split_stage_mask(mask, layer["filters"], layer["first_channels"])


OPS: dict[str, Callable[..., Any]] = {
    "FMPadding": _fmpadding, "ConvolutionInputGenerator": _im2col, "Pool": _pool,
    "MVAU": _mvau, "MaskedMVAU": _mvau, "MaskSplit": _mask_split,
}


@dataclass
class Stage:
    """One accelerator: run its layers on a batch of integer inputs (NHWC)."""

    name: str
    spec: dict
    params: Any  # mapping name -> array (npz)

    @property
    def inputs(self) -> list[dict]:
        return self.spec["inputs"]

    @property
    def layers(self) -> list[dict]:
        return self.spec["layers"]

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        """Execute the stage; keyword per input tensor (``pixels`` / ``features``, ``mask``)."""
        values: dict[str, np.ndarray] = {}
        for inp in self.inputs:
            if inp["role"] not in inputs:
                raise ValueError(f"{self.name}: missing input {inp['role']!r}")
            x = np.asarray(inputs[inp["role"]])
            want = tuple(inp["shape"][1:])
            if x.ndim != len(inp["shape"]) or tuple(x.shape[1:]) != want:
                raise ValueError(f"{self.name}: input {inp['role']} must have shape "
                                 f"(N, {', '.join(map(str, want))}); got {x.shape}")
            lo, hi = inp["range"]
            if x.size and (x.min() < lo or x.max() > hi or not np.all(np.equal(np.mod(x, 1), 0))):
                raise ValueError(f"{self.name}: input {inp['role']} must hold integers in "
                                 f"[{lo}, {hi}] ({inp['datatype']})")
            values[inp["tensor"]] = x.astype(np.int64)
        if len({len(v) for v in values.values()}) > 1:
            raise ValueError(f"{self.name}: inputs have different batch sizes")
        for layer in self.layers:
            fn = OPS.get(layer["op"])
            if fn is None:
                raise ValueError(f"{self.name}: layer {layer['name']} has unsupported op "
                                 f"{layer['op']}")
            args = [values[t] for t in layer["inputs"]]
            out = fn(layer, self.params, *args)
            outs = out if isinstance(out, list) else [out]
            values.update(zip(layer["outputs"], outs))
        return values[self.spec["outputs"][0]["tensor"]]

    def cycles(self, masks: Sequence[np.ndarray] | None = None, mode: str = "latency") -> int:
        return stage_cycles(self.spec, masks, mode)


class Accelerator:
    """The exported stage accelerators of a bundle (``<bundle>/accel``)."""

    def __init__(self, accel_dir: str | Path):
        accel_dir = Path(accel_dir)
        path = accel_dir / LAYERS_JSON
        self.description = read_json(path, BUILD_HINT)
        if self.description.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {self.description.get('version')}, "
                             f"expected {FORMAT_VERSION}")
        self.stages = {name: Stage(name, spec, read_npz(accel_dir / spec["params"], BUILD_HINT))
                       for name, spec in self.description["stages"].items()}

    @property
    def feature_scale(self) -> float:
        return float(self.description["feature_scale"])

    @property
    def logit_scale(self) -> float:
        return float(self.description["logit_scale"])

    @property
    def mask_length(self) -> int:
        return int(sum(self.description["filters_per_layer"]))

    def stage_a(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels -> integer NHWC features."""
        return self.stages["stage_a"].run(pixels=pixels)

    def stage_b(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Integer NHWC features + (N, sum F) 0/1 mask -> integer logits (N, classes)."""
        return self.stages["stage_b"].run(features=features, mask=mask)


def _layer_folding(layer: dict) -> Folding:
    return Folding(mh=layer["MH"], mw=layer["MW"], pe=layer["PE"], simd=layer["SIMD"],
                   kk=layer.get("KK", 1))


def stage_cycles(stage: dict, masks: Sequence[np.ndarray] | None = None,
                 mode: str = "latency") -> int:
    """Modelled cycles of one image through a stage for per-layer filter enables.

    ``stage``: ``estimates["stages"][name]`` (estimates.json) or a stage of layers.json;
    ``masks``: one bool array ``(F_l,)`` per prunable (MaskedMVAU) layer in order, or None
    (all enabled). Masked layers cost :func:`dyfip.kernels.masked_mvau_cycles` with the
    previous prunable layer's filter enables as channel enables; other layers their full
    cycles. ``mode="latency"``: sum over layers (single image, no overlap);
    ``"bottleneck"``: max over layers (throughput-limiting layer).
    """
    layers = stage["layers"]
    masked = [la for la in layers if la["op"] == "MaskedMVAU"]
    if masks is not None and len(masks) != len(masked):
        raise ValueError(f"expected {len(masked)} layer masks "
                         f"({[la['layer'] for la in masked]}), got {len(masks)}")
    costs, prev, k = [], None, 0
    for la in layers:
        if la["op"] == "MaskedMVAU" and masks is not None:
            filt = np.asarray(masks[k], dtype=bool).ravel()
            if filt.size != la["MH"]:
                raise ValueError(f"layer {la['layer']}: mask of length {filt.size}, "
                                 f"expected {la['MH']} filters")
            chan = prev if prev is not None else None
            costs.append(masked_mvau_cycles(_layer_folding(la), filt, chan, la["pixels"]))
            prev, k = filt, k + 1
        else:
            costs.append(int(la["cycles"]))
    if mode == "latency":
        return int(sum(costs))
    if mode == "bottleneck":
        return int(max(costs))
    raise ValueError(f"mode must be 'latency' or 'bottleneck', got {mode!r}")


def stage_cycles_batch(stage: dict, masks: Sequence[np.ndarray], mode: str = "latency"
                       ) -> np.ndarray:
    """:func:`stage_cycles` per image: ``masks[l]`` is ``(N, F_l)``; returns ``(N,)`` ints."""
    n = len(masks[0]) if masks else 0
    return np.array([stage_cycles(stage, [m[i] for m in masks], mode) for i in range(n)],
                    dtype=np.int64)


__all__ = ["Accelerator", "Stage", "split_stage_mask", "stage_cycles", "stage_cycles_batch",
           "OPS", "FORMAT_VERSION"]

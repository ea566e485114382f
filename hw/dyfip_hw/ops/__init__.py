"""DyFiP's FINN custom ops, registered into finn-plus's op registries on import.

- ``MaskedMVAU`` (generic) / ``MaskedMVAU_rtl``: the filter-enable matrix-vector-activation
  unit. Node inputs ``[data, weights, thresholds, mask]``: the mask is the op's second
  *stream* (ONNX input index :data:`MASK_INPUT`), one word of ``MH + CH`` bits per image in
  the layout of :mod:`dyfip.kernels`.
- ``MaskSplit`` (generic) / ``MaskSplit_rtl``: splits the stage's single mask vector (all
  prunable layers' filter enables, layer order) into one ``[filters | input channels]`` word
  per MaskedMVAU; a layer's channel enables are the previous layer's filter enables, all ones
  for the first layer.
"""
from .masked_mvau import MASK_INPUT, MaskedMVAU, MaskedMVAU_rtl
from .mask_split import MaskSplit, MaskSplit_rtl

GENERIC_OPS = ("MaskedMVAU", "MaskSplit")

__all__ = ["MASK_INPUT", "MaskedMVAU", "MaskedMVAU_rtl", "MaskSplit", "MaskSplit_rtl",
           "GENERIC_OPS"]

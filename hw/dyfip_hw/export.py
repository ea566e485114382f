"""QONNX export of stage A and stage B (+ head) with integer inputs.

Both stage graphs take the integers the hardware streams, as float tensors:

- stage A: uint8 pixels (N, C, H, W); the graph starts with ``Mul(1/255)``, exactly the
  network's fixed-scale input quantiser on integer pixels;
- stage B: stage A's unsigned ``act_bits`` features (N, C, H, W) as integers; the graph starts
  with ``Mul(s_A)`` (stage A's last activation scale), so the features are not re-quantised.

FINN streamlines the leading ``Mul`` into the first thresholds. Export uses batch 1 (FINN's
conv lowering assumes it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dyfip.model import DyFiPNet


class IntegerInput(nn.Module):
    """``body(x * scale)``: feeds integer activations to a Brevitas sub-network."""

    def __init__(self, scale: float, *body: nn.Module):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * self.scale)


def act_scale(act: nn.Module) -> float:
    """Per-tensor scale of a Brevitas QuantReLU."""
    return float(act.act_quant.scale().detach())


@dataclass(frozen=True)
class StageInfo:
    """Facts about the integer interface between stages (written into the bundle)."""

    in_scale_a: float  # 1/255
    feature_scale: float  # s_A: features = integers * s_A
    feature_bits: int
    logit_scale: float  # logits = integer accumulators * logit_scale


def stage_info(model: DyFiPNet) -> StageInfo:
    classifier = model.head[-1]
    last_act = model.head[-2] if len(model.head) > 2 else model.stage_b[-1].act
    w_scale = float(classifier.quant_weight().scale.detach())
    return StageInfo(1.0 / 255.0, act_scale(model.stage_a[-1].act), model.config.act_bits,
                     act_scale(last_act) * w_scale)


def stage_modules(model: DyFiPNet) -> tuple[IntegerInput, IntegerInput]:
    """Integer-input wrappers of stage A and stage B + head, in eval mode."""
    info = stage_info(model)
    a = IntegerInput(info.in_scale_a, model.stage_a)
    b = IntegerInput(info.feature_scale, *model.stage_b, model.head)
    return a.eval(), b.eval()


def export_stages(model: DyFiPNet, out_dir: str | Path) -> dict[str, Path]:
    """Write ``stage_a.onnx`` and ``stage_b.onnx`` (QONNX, batch 1) into ``out_dir``."""
    from brevitas.export import export_qonnx

    from dyfip.bundle import atomic_write_with

    model.eval()
    out_dir = Path(out_dir)
    paths = {}
    for name, module, shape in zip(("stage_a", "stage_b"), stage_modules(model),
                                   (model.in_shape, model.feature_shape)):
        path = out_dir / f"{name}.onnx"
        atomic_write_with(path, lambda tmp, m=module, s=shape: export_qonnx(
            m, torch.zeros(1, *s), export_path=tmp, opset_version=13, dynamo=False))
        paths[name] = path
    model.eval()  # export restores the wrappers' training flag: keep everything in eval
    return paths


@torch.no_grad()
def reference_integers(model: DyFiPNet, images: np.ndarray,
                       masks: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch reference on uint8 images: (stage-A integer features NCHW, integer logits).

    ``masks[l]`` is (N, F_l) 0/1 per prunable layer. Integers are recovered by dividing by
    the scales and rounding (Brevitas outputs are exact multiples of them).
    """
    from dyfip.model import images_to_float

    model.eval()
    info = stage_info(model)
    feats = model.features(images_to_float(images))
    tmasks = None if masks is None else [torch.as_tensor(np.asarray(m), dtype=torch.float32)
                                         for m in masks]
    logits = model.stage_b_logits(feats, tmasks)
    f_int = np.rint(feats.numpy() / info.feature_scale).astype(np.int64)
    l_int = np.rint(logits.numpy() / info.logit_scale).astype(np.int64)
    return f_int, l_int

"""The quantized DyFiP network: stage A, coarse top-k branch, maskable stage B.

Built from Brevitas layers that FINN supports: 3x3 QuantConv2d (no bias) -> BatchNorm ->
QuantReLU -> optional 2x2 max-pool; per-tensor low-bit weights; an 8-bit fixed-scale input
quantizer so that the accelerator takes raw uint8 pixels.
"""
from __future__ import annotations

import hashlib
import json
import numpy as np
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (Int8WeightPerChannelFloat, Int8WeightPerTensorFloat,
                            Uint8ActPerTensorFloat)
from torch import nn

from .config import Config, ConvSpec
from .costs import LayerGeometry


class PixelQuant(Uint8ActPerTensorFloat):
    """Unsigned 8-bit input with the constant scale 1/255: exactly the uint8 pixel values."""

    scaling_impl_type = ScalingImplType.CONST
    max_val = 1.0


# conv weight quantizers by scale granularity: one scale per layer or per filter (FINN folds
# either into the thresholds of the following activation)
WEIGHT_QUANTS = {"tensor": Int8WeightPerTensorFloat, "channel": Int8WeightPerChannelFloat}


class QuantConvBlock(nn.Module):
    """conv3x3 -> BN -> QuantReLU [-> maxpool 2x2]; ``mask`` zeroes whole filters."""

    def __init__(self, in_channels: int, spec: ConvSpec, weight_bits: int, act_bits: int,
                 weight_scaling: str = "tensor"):
        super().__init__()
        self.spec = spec
        self.conv = QuantConv2d(in_channels, spec.out_channels, 3, padding=spec.padding,
                                bias=False, weight_quant=WEIGHT_QUANTS[weight_scaling],
                                weight_bit_width=weight_bits)
        self.bn = nn.BatchNorm2d(spec.out_channels)
        self.act = QuantReLU(bit_width=act_bits, act_quant=Uint8ActPerTensorFloat)
        self.pool = nn.MaxPool2d(2) if spec.pool else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.pool(self.act(self.bn(self.conv(x))))
        if mask is not None:
            y = y * mask.to(y.dtype)[:, :, None, None]
        return y


class DyFiPNet(nn.Module):
    """Stage A -> (branch | stage B with per-layer filter masks -> classifier)."""

    def __init__(self, config: Config, in_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.config = config
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        wb, ab = config.weight_bits, config.act_bits
        edge_wb = config.edge_weight_bits or wb
        self.input_quant = QuantIdentity(act_quant=PixelQuant, return_quant_tensor=False)
        channels, size = in_shape[0], in_shape[1]
        self.geometry: list[LayerGeometry] = []
        blocks_a = []
        for i, spec in enumerate(config.stage_a):
            blocks_a.append(QuantConvBlock(channels, spec, edge_wb if i == 0 else wb, ab,
                                           config.weight_scaling))
            channels, size = self._record(f"stage_a.{i}", "a", channels, spec, size)
        self.stage_a = nn.Sequential(*blocks_a)
        self.feature_shape = (channels, size, size)
        pooled = size // config.branch_pool
        if pooled < 1:
            raise ValueError(f"branch_pool={config.branch_pool} larger than the {size}x{size} "
                             "stage-A output")
        self.branch = nn.Sequential(
            nn.AvgPool2d(config.branch_pool), nn.Flatten(),
            QuantLinear(channels * pooled * pooled, num_classes, bias=True,
                        weight_quant=Int8WeightPerTensorFloat, weight_bit_width=8))
        self.geometry.append(LayerGeometry("branch", "branch", channels, num_classes,
                                           pooled * pooled, 1))
        blocks_b = []
        for i, spec in enumerate(config.stage_b):
            blocks_b.append(QuantConvBlock(channels, spec, wb, ab, config.weight_scaling))
            channels, size = self._record(f"stage_b.{i}", "b", channels, spec, size)
        self.stage_b = nn.ModuleList(blocks_b)
        head: list[nn.Module] = [nn.Flatten()]
        width, kk = channels * size * size, size * size
        for j, hidden in enumerate(config.head_hidden):
            head += [QuantLinear(width, hidden, bias=False, weight_quant=Int8WeightPerTensorFloat,
                                 weight_bit_width=wb),
                     nn.BatchNorm1d(hidden), QuantReLU(bit_width=ab)]
            self.geometry.append(LayerGeometry(f"head.{j}", "b", width // kk, hidden, kk, 1))
            width, kk = hidden, 1
        head.append(QuantLinear(width, num_classes, bias=False,
                                weight_quant=Int8WeightPerTensorFloat, weight_bit_width=edge_wb))
        self.geometry.append(LayerGeometry("classifier", "b", width // kk, num_classes, kk, 1))
        self.head = nn.Sequential(*head)

    def _record(self, name: str, stage: str, channels: int, spec: ConvSpec, size: int
                ) -> tuple[int, int]:
        out = size + 2 * spec.padding - 2
        if out < 1 or (spec.pool and out < 2):
            raise ValueError(f"layer {name}: input {size}x{size} too small for its 3x3 conv/pool")
        self.geometry.append(LayerGeometry(name, stage, channels, spec.out_channels, 9,
                                           out * out, prunable=stage == "b"))
        return spec.out_channels, out // 2 if spec.pool else out

    # -- structure -----------------------------------------------------------------------
    @property
    def prunable_layers(self) -> list[str]:
        return [g.name for g in self.geometry if g.prunable]

    @property
    def filters_per_layer(self) -> list[int]:
        return [g.out_channels for g in self.geometry if g.prunable]

    # -- forward -------------------------------------------------------------------------
    def check_images(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, self.in_shape))}); "
                             f"got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stage A on float images in [0, 1] (uint8 / 255)."""
        self.check_images(x)
        return self.stage_a(self.input_quant(x))

    def branch_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.branch(features)

    def stage_b_logits(self, features: torch.Tensor,
                       masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Stage B and classifier; ``masks[l]`` is (N, F_l) of 0/1 for prunable layer l."""
        if masks is not None and len(masks) != len(self.stage_b):
            raise ValueError(f"expected {len(self.stage_b)} layer masks, got {len(masks)}")
        y = features
        for i, block in enumerate(self.stage_b):
            y = block(y, None if masks is None else masks[i])
        return self.head(y)

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.stage_b_logits(f, masks), self.branch_logits(f)


def images_to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> the float input the network expects (exactly representable /255)."""
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    if t.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 pixels, got {t.dtype}")
    return t.float() / 255.0


def model_hash(model: nn.Module) -> str:
    """SHA-256 over the state dict (names, shapes, values): binds tables to weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        arr = tensor.detach().cpu().contiguous().numpy()
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def front_end_hash(model: DyFiPNet) -> str:
    """``model_hash`` of what decides an image's path: input quantizer, stage A, branch."""
    return model_hash(nn.ModuleList([model.input_quant, model.stage_a, model.branch]))


def build_model(config: Config, in_shape: tuple[int, int, int], num_classes: int) -> DyFiPNet:
    torch.manual_seed(config.seed)
    return DyFiPNet(config, in_shape, num_classes)


def save_checkpoint(model: DyFiPNet, path) -> None:
    from .bundle import atomic_write_with

    payload = {"config": model.config.to_json(), "in_shape": model.in_shape,
               "num_classes": model.num_classes, "state_dict": model.state_dict()}
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path, hint: str = "re-run the step that writes it") -> DyFiPNet:
    """The network saved by :func:`save_checkpoint`; a corrupt file names itself and
    ``hint`` (how to make it again)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        config = payload["config"]
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch reports truncation / junk as many different errors
        raise ValueError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {exc}): "
                         f"{hint}") from None
    model = DyFiPNet(Config.from_dict(json.loads(config)),
                     tuple(payload["in_shape"]), payload["num_classes"])
    result = model.load_state_dict(payload["state_dict"], strict=False)
    # an activation quantizer that never saw training data has no learned scale yet
    bad = [k for k in result.missing_keys if not k.endswith("scaling_impl.value")]
    if bad or result.unexpected_keys:
        raise ValueError(f"checkpoint {path} does not match its config: missing {bad}, "
                         f"unexpected {result.unexpected_keys}: {hint}")
    model.eval()
    return model

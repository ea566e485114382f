"""The coarse branch on the host: avg-pool + linear folded into one matrix (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError, InputError
from .files import read_npz


@dataclass(frozen=True)
class Branch:
    """``logits = flatten_nhwc(int_features) @ matrix + bias``.

    ``branch.npz`` holds the PyTorch branch: ``weight`` (classes, C*ph*pw) in NCHW-flatten order
    of the ``pool``-averaged real features (= integers * ``feature_scale``). Pooling, scale
    and the NCHW order are folded into ``matrix`` once, so the host runs one small matmul on
    the accelerator's integer NHWC output.
    """

    matrix: np.ndarray  # (H*W*C, classes) float64, NHWC-flatten order
    bias: np.ndarray  # (classes,)
    feature_shape: tuple[int, int, int]  # (C, H, W)
    feature_scale: float
    model_hash: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> "Branch":
        path = Path(path)
        data = read_npz(path, "the bundle's coarse branch; (re)make it with 'dyfip run'")
        try:
            weight, bias = data["weight"].astype(np.float64), data["bias"].astype(np.float64)
            c, h, w = (int(v) for v in data["feature_shape"])
            pool, scale = int(data["pool"]), float(data["feature_scale"])
        except KeyError as exc:
            raise BundleError(f"{path} is missing field {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{path} has a malformed field: {exc}") from exc
        if min(c, h, w, pool) < 1 or bias.ndim != 1:
            raise BundleError(f"{path}: feature shape {(c, h, w)}, pool {pool} and bias shape "
                              f"{bias.shape} are not a branch's")
        ph, pw = h // pool, w // pool
        if weight.shape != (len(bias), c * ph * pw):
            raise BundleError(f"{path}: weight shape {weight.shape} does not fit features "
                              f"{(c, h, w)} pooled by {pool} and {len(bias)} classes")
        # weight[:, c, i, j] applies to the mean of the pool x pool window (i, j) of channel c
        wt = weight.reshape(len(bias), c, ph, pw) * (scale / pool**2)
        full = np.zeros((len(bias), c, h, w))
        full[:, :, : ph * pool, : pw * pool] = np.repeat(np.repeat(wt, pool, 2), pool, 3)
        matrix = np.ascontiguousarray(full.transpose(2, 3, 1, 0).reshape(h * w * c, len(bias)))
        mh = str(data["model_hash"]) if "model_hash" in data else None
        return cls(matrix, bias, (c, h, w), scale, mh)

    @property
    def num_classes(self) -> int:
        return len(self.bias)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Integer NHWC features ``(N, H, W, C)`` -> branch logits ``(N, classes)``."""
        n = features.shape[0]
        flat = features.reshape(n, int(np.prod(features.shape[1:])))  # also for n == 0
        if flat.shape[1] != self.matrix.shape[0]:
            raise InputError(f"branch expects features of {self.matrix.shape[0]} values "
                             f"(H, W, C) = {self.feature_shape[1:] + self.feature_shape[:1]}; "
                             f"got shape {features.shape}")
        return flat @ self.matrix + self.bias

"""Reference dynamic inference in PyTorch: exit early, or stage B under mask(S), argmax in S."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .decision import Decision, decide, restricted_argmax
from .model import DyFiPNet, images_to_float
from .tables import MaskTable


@dataclass(frozen=True)
class Prediction:
    """Per image: the class, whether it exited, its class subset and stage-B logits."""

    classes: np.ndarray  # int (N,)
    decision: Decision
    logits: np.ndarray  # float (N, C): stage-B logits (NaN rows for early exits)

    @property
    def exited(self) -> np.ndarray:
        return self.decision.exit


@torch.no_grad()
def branch_decisions(model: DyFiPNet, images: np.ndarray, k: int, tau: float,
                     k_max: int | None = None, set_mass: float = 1.0
                     ) -> tuple[torch.Tensor, Decision]:
    """Stage A features and the branch decision for uint8 images (N, C, H, W)."""
    model.eval()
    feats = model.features(images_to_float(images))
    return feats, decide(model.branch_logits(feats).double().numpy(), k, tau, k_max, set_mass)


@torch.no_grad()
def dyfip_predict(model: DyFiPNet, images: np.ndarray, table: MaskTable | None, k: int,
                  tau: float, static: bool = False, batch_size: int = 512,
                  k_max: int | None = None, set_mass: float = 1.0) -> Prediction:
    """DyFiP on a batch of uint8 images (candidate sets: see :func:`dyfip.decision.decide`).

    ``table=None`` runs stage B unmasked (early exit only, prediction over all classes);
    ``static=True`` uses the table's class-agnostic mask (prediction still restricted to S).
    """
    k_max = k if k_max is None else k_max
    if table is not None and (table.k, table.k_max) != (k, k_max):
        raise ValueError(f"table was built for sets of {table.k}..{table.k_max} classes, "
                         f"asked for {k}..{k_max}")
    parts = []
    for start in range(0, len(images), batch_size):
        parts.append(_predict_batch(model, images[start:start + batch_size], table, k, tau,
                                    static, k_max, set_mass))
    return Prediction(np.concatenate([p.classes for p in parts]),
                      Decision(*(np.concatenate([getattr(p.decision, f) for p in parts])
                                 for f in ("exit", "branch_pred", "subsets", "confidence"))),
                      np.concatenate([p.logits for p in parts]))


def _predict_batch(model, images, table, k, tau, static, k_max, set_mass) -> Prediction:
    feats, dec = branch_decisions(model, images, k, tau, k_max, set_mass)
    classes = dec.branch_pred.copy()
    logits = np.full((len(images), model.num_classes), np.nan)
    run = np.flatnonzero(~dec.exit)
    if len(run):
        masks = None
        if table is not None:
            per_layer = ([np.broadcast_to(m, (len(run), len(m))) for m in table.static_masks]
                         if static else table.batch_masks(dec.subsets[run]))
            masks = [torch.from_numpy(np.ascontiguousarray(m)).float() for m in per_layer]
        out = model.stage_b_logits(feats[run], masks).double().numpy()
        logits[run] = out
        classes[run] = (out.argmax(1) if table is None
                        else restricted_argmax(out, dec.subsets[run]))
    return Prediction(classes, dec, logits)


@torch.no_grad()
def full_predict(model: DyFiPNet, images: np.ndarray, table: MaskTable | None = None,
                 batch_size: int = 512) -> np.ndarray:
    """The whole network on every image (optionally with the static mask), no exit."""
    out = []
    for start in range(0, len(images), batch_size):
        feats = model.features(images_to_float(images[start:start + batch_size]))
        masks = None
        if table is not None:
            masks = [torch.from_numpy(m).float().expand(len(feats), -1)
                     for m in table.static_masks]
        out.append(model.stage_b_logits(feats, masks).argmax(1).numpy())
    return np.concatenate(out)

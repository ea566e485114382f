"""Reference dynamic inference in PyTorch: exit early, or stage B under mask(S), argmax in S."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .decision import Decision, decide, restricted_argmax
from .model import DyFiPNet, front_end_hash, images_to_float
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


@dataclass(frozen=True)
class StageAOutputs:
    """Stage-A features and branch logits of a batch of images. Fine-tuning never changes
    stage A or the branch, so one computation serves the trained network and every
    fine-tune of it (``front_end``: the hash that says which networks those are)."""

    features: torch.Tensor
    branch_logits: torch.Tensor
    front_end: str

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, part: slice) -> StageAOutputs:
        return StageAOutputs(self.features[part], self.branch_logits[part], self.front_end)

    def check(self, model: DyFiPNet, images: np.ndarray) -> None:
        """Refuse outputs of other images or of a network with another stage A or branch."""
        if len(self) != len(images):
            raise ValueError(f"stage-A outputs of {len(self)} images for {len(images)} images")
        if front_end_hash(model) != self.front_end:
            raise ValueError("the stage-A outputs are another network's: this one's stage A "
                             "or branch differs (fine-tuning must keep them)")


@torch.no_grad()
def stage_a_outputs(model: DyFiPNet, images: np.ndarray, batch_size: int = 512
                    ) -> StageAOutputs:
    """Stage A and the branch on uint8 images (N, C, H, W), ``batch_size`` at a time."""
    model.eval()
    parts = list(_batches(model, images, batch_size, None))
    return StageAOutputs(torch.cat([p.features for p in parts]),
                         torch.cat([p.branch_logits for p in parts]), parts[0].front_end)


def _batches(model: DyFiPNet, images: np.ndarray, batch_size: int,
             stage_a: StageAOutputs | None):
    """Each batch's stage-A outputs: slices of ``stage_a`` (checked), else computed."""
    if len(images) == 0:
        raise ValueError(f"no images to run: got an empty array of shape {np.shape(images)}")
    parts = [slice(start, start + batch_size) for start in range(0, len(images), batch_size)]
    if stage_a is not None:
        stage_a.check(model, images)
        yield from (stage_a[part] for part in parts)
        return
    front_end = front_end_hash(model)  # once per call, not per batch
    for part in parts:
        feats = model.features(images_to_float(images[part]))
        yield StageAOutputs(feats, model.branch_logits(feats), front_end)


@torch.no_grad()
def dyfip_predict(model: DyFiPNet, images: np.ndarray, table: MaskTable | None, k: int,
                  tau: float, static: bool = False, batch_size: int = 512,
                  k_max: int | None = None, set_mass: float = 1.0,
                  stage_a: StageAOutputs | None = None) -> Prediction:
    """DyFiP on a batch of uint8 images (candidate sets: see :func:`dyfip.decision.decide`).

    ``table=None`` runs stage B unmasked (early exit only, prediction over all classes);
    ``static=True`` uses the table's class-agnostic mask (prediction still restricted to S);
    ``stage_a``: the images' stage-A outputs if already computed.
    """
    k_max = k if k_max is None else k_max
    if table is not None and (table.k, table.k_max) != (k, k_max):
        raise ValueError(f"table was built for sets of {table.k}..{table.k_max} classes, "
                         f"asked for {k}..{k_max}")
    model.eval()
    parts = [_predict_batch(model, front, table, k, tau, static, k_max, set_mass)
             for front in _batches(model, images, batch_size, stage_a)]
    return Prediction(np.concatenate([p.classes for p in parts]),
                      Decision(*(np.concatenate([getattr(p.decision, f) for p in parts])
                                 for f in ("exit", "branch_pred", "subsets", "confidence"))),
                      np.concatenate([p.logits for p in parts]))


def _predict_batch(model, front: StageAOutputs, table, k, tau, static, k_max, set_mass
                   ) -> Prediction:
    dec = decide(front.branch_logits.double().numpy(), k, tau, k_max, set_mass)
    n = len(front)
    classes = dec.branch_pred.copy()
    logits = np.full((n, model.num_classes), np.nan)
    run = np.flatnonzero(~dec.exit)
    if len(run):
        masks = None
        if table is not None:
            per_layer = ([np.broadcast_to(m, (len(run), len(m))) for m in table.static_masks]
                         if static else table.batch_masks(dec.subsets[run]))
            masks = [torch.from_numpy(np.ascontiguousarray(m)).float() for m in per_layer]
        out = model.stage_b_logits(front.features[run], masks).double().numpy()
        logits[run] = out
        classes[run] = (out.argmax(1) if table is None
                        else restricted_argmax(out, dec.subsets[run]))
    return Prediction(classes, dec, logits)


@torch.no_grad()
def full_predict(model: DyFiPNet, images: np.ndarray, table: MaskTable | None = None,
                 batch_size: int = 512, stage_a: StageAOutputs | None = None) -> np.ndarray:
    """The whole network on every image (optionally with the static mask), no exit."""
    model.eval()
    out = []
    for front in _batches(model, images, batch_size, stage_a):
        masks = None
        if table is not None:
            masks = [torch.from_numpy(m).float().expand(len(front), -1)
                     for m in table.static_masks]
        out.append(model.stage_b_logits(front.features, masks).argmax(1).numpy())
    return np.concatenate(out)

"""Per-class filter importance of stage B from Captum layer attributions.

``importance[layer][c_img, c_target, f]`` is the attribution of logit ``c_target`` to filter f
of a prunable layer (summed over H, W), averaged over training images of class ``c_img``. The
diagonal is the classic per-class importance; the off-diagonal feeds contrastive masks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from captum.attr import LayerConductance, LayerGradientXActivation, LayerIntegratedGradients
from tqdm.auto import tqdm

from .data import Split
from .model import DyFiPNet, images_to_float

ATTRIBUTION_METHODS: dict[str, Callable] = {
    "grad_x_act": LayerGradientXActivation,
    "integrated_gradients": LayerIntegratedGradients,
    "conductance": LayerConductance,
}


def sample_per_class(split: Split, per_class: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of up to ``per_class`` images of every class; fails on an empty class."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(num_classes):
        idx = np.flatnonzero(split.labels == c)
        if len(idx) == 0:
            raise ValueError(f"class {c} has no training images: cannot explain it")
        picks.append(rng.permutation(idx)[:per_class])
    return np.concatenate(picks)


# Methods that attribute to a list of layers in one forward/backward pass; the others run
# once per layer (integrated gradients would interpolate every layer's output at once).
MULTI_LAYER = ("grad_x_act",)


def _attribute(method, features: torch.Tensor, target: int) -> list[torch.Tensor]:
    if isinstance(method, (LayerIntegratedGradients, LayerConductance)):
        attr = method.attribute(features, target=target, n_steps=16)
    else:
        attr = method.attribute(features, target=target)
    return list(attr) if isinstance(attr, (list, tuple)) else [attr]


def _attributors(model: DyFiPNet, method: str) -> list[tuple[list[int], object]]:
    """(indices of the stage-B layers it covers, Captum attributor) pairs for ``method``."""
    cls, layers = ATTRIBUTION_METHODS[method], list(model.stage_b)
    if method in MULTI_LAYER:
        return [(list(range(len(layers))), cls(model.stage_b_logits, layers))]
    return [([i], cls(model.stage_b_logits, layer)) for i, layer in enumerate(layers)]


def compute_importance(model: DyFiPNet, split: Split, method: str = "grad_x_act",
                       per_class: int = 64, seed: int = 0, batch_size: int = 256,
                       ) -> dict[str, np.ndarray]:
    """Importance arrays (C, C, F) per prunable layer name; ``method='random'`` is a baseline."""
    num_classes = model.num_classes
    names = model.prunable_layers
    if method == "random":
        rng = np.random.default_rng(seed)
        return {n: np.broadcast_to(rng.random((1, 1, f)), (num_classes, num_classes, f)).copy()
                for n, f in zip(names, model.filters_per_layer)}
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose from "
                         f"{sorted(ATTRIBUTION_METHODS) + ['random']}")
    model.eval()
    idx = sample_per_class(split, per_class, num_classes, seed)
    labels = split.labels[idx]
    attributors = _attributors(model, method)
    sums = {n: np.zeros((num_classes, num_classes, f)) for n, f in zip(names, model.filters_per_layer)}
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    starts = range(0, len(idx), batch_size)
    with tqdm(total=len(starts) * num_classes, desc=f"explain ({method})", leave=False) as bar:
        for start in starts:
            chunk, chunk_labels = idx[start:start + batch_size], labels[start:start + batch_size]
            with torch.no_grad():  # stage A once per chunk, for every target logit
                feats = model.features(images_to_float(split.images[chunk]))
            for target in range(num_classes):
                for layer_ids, attributor in attributors:
                    for i, attr in zip(layer_ids, _attribute(attributor, feats, target)):
                        per_filter = attr.detach().sum(dim=(2, 3)).double().numpy()  # (n, F)
                        np.add.at(sums[names[i]][:, target], chunk_labels, per_filter)
                bar.update()
    return {n: s / counts[:, None, None] for n, s in sums.items()}


def plot_importance(importance: dict[str, np.ndarray], path, class_names=None) -> None:
    """Heat map per layer: classes x filters, per-class own-logit importance."""
    from .plots import pyplot, save_figure

    fig, axes = pyplot().subplots(len(importance), 1, figsize=(10, 2.2 * len(importance)),
                                  squeeze=False)
    for ax, (name, imp) in zip(axes[:, 0], importance.items()):
        own = np.einsum("ccf->cf", imp)
        ax.imshow(own / (np.abs(own).max(axis=1, keepdims=True) + 1e-12), aspect="auto",
                  cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_title(f"{name}: per-class filter importance")
        ax.set_ylabel("class")
        if class_names is not None:
            ax.set_yticks(range(len(class_names)), class_names, fontsize=6)
    axes[-1, 0].set_xlabel("filter")
    fig.tight_layout()
    save_figure(fig, path)

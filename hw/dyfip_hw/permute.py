"""Offline filter permutation that clusters co-important filters into the same PE group.

The masked MVAU skips a neuron fold (a group of ``PE`` consecutive filters) only when every
filter of the group is disabled. Reordering the filters of prunable layer ``l`` -- its conv
weights and BatchNorm, and the matching input channels of layer ``l+1`` (or of the head's
first QuantLinear) -- leaves the network's function unchanged but lets filters that matter for
the same classes share a group: class-specific masks then enable fewer folds (filter-level
masks) or keep more importance per kept group (group-level masks).

``importance[layer]`` is ``(C, C, F)`` (``dyfip.explain``: image class x target class x
filter; the diagonal is used) or ``(C, F)`` per-class filter importance.
"""
from __future__ import annotations

import copy
import itertools
from typing import Mapping

import numpy as np
import torch

from dyfip.kernels import enabled_folds
from dyfip.tables import Budget


def class_profiles(importance: np.ndarray) -> np.ndarray:
    """``(C, F)`` non-negative per-class importance, each class row summing to 1."""
    imp = np.asarray(importance, dtype=np.float64)
    if imp.ndim == 3:
        imp = np.einsum("ccf->cf", imp)
    if imp.ndim != 2:
        raise ValueError(f"importance must be (C, F) or (C, C, F); got shape {imp.shape}")
    imp = np.abs(imp)
    return imp / np.where(imp.sum(1, keepdims=True) > 0, imp.sum(1, keepdims=True), 1.0)


def _greedy_clusters(prof: np.ndarray, size: int) -> np.ndarray:
    """Order of the rows of ``prof`` (items x classes) in consecutive clusters of ``size``:
    the most important unassigned item seeds a cluster, filled with the unassigned items of
    the most similar class profiles (cosine)."""
    unit = prof / np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    left = list(np.argsort(-prof.max(axis=1), kind="stable"))
    order: list[int] = []
    while left:
        seed = left.pop(0)
        sim = unit[left] @ unit[seed] if left else np.zeros(0)
        take = [left[i] for i in np.argsort(-sim, kind="stable")[: size - 1]]
        order += [seed, *take]
        left = [i for i in left if i not in set(take)]
    return np.asarray(order, dtype=np.int64)


def cluster_permutation(importance: np.ndarray, group: int, block: int = 0) -> np.ndarray:
    """Filter order in which consecutive ``group``-sized groups share important classes and,
    with ``block`` (a multiple of ``group``), consecutive blocks of groups do too.

    Returns ``perm`` with ``new_filter[i] = old_filter[perm[i]]``.
    """
    prof = class_profiles(importance).T  # (F, C)
    f = len(prof)
    if group < 1 or f % group:
        raise ValueError(f"group size {group} does not divide {f} filters")
    order = _greedy_clusters(prof, group)
    if block > group:
        if block % group or f % block:
            raise ValueError(f"block size {block} must be a multiple of group size {group} "
                             f"dividing {f} filters")
        groups = order.reshape(-1, group)
        order = groups[_greedy_clusters(prof[groups].sum(axis=1), block // group)].ravel()
    return order


@torch.no_grad()
def permute_model(model, perms: Mapping[str, np.ndarray]):
    """A copy of ``model`` with the filters of each prunable layer in ``perms`` reordered.

    Permuted together: conv weights and BatchNorm of layer ``l``; input channels of the next
    stage-B conv, or of the head's first QuantLinear (its inputs are flattened C x H x W).
    Per-tensor quantiser scales are order-invariant, so the function is unchanged.
    """
    out = copy.deepcopy(model)
    names = [f"stage_b.{i}" for i in range(len(out.stage_b))]
    unknown = set(perms) - set(names)
    if unknown:
        raise ValueError(f"permutation for unknown layers {sorted(unknown)}; prunable: {names}")
    for i, name in enumerate(names):
        if name not in perms:
            continue
        block = out.stage_b[i]
        p = torch.as_tensor(np.asarray(perms[name]), dtype=torch.long)
        if sorted(p.tolist()) != list(range(block.conv.out_channels)):
            raise ValueError(f"layer {name}: not a permutation of {block.conv.out_channels} "
                             "filters")
        block.conv.weight.data = block.conv.weight.data[p].clone()
        for t in (block.bn.weight, block.bn.bias, block.bn.running_mean, block.bn.running_var):
            t.data = t.data[p].clone()
        if i + 1 < len(out.stage_b):
            nxt = out.stage_b[i + 1].conv.weight
            nxt.data = nxt.data[:, p].clone()
        else:
            fc = out.head[1]
            w = fc.weight.data
            w3 = w.reshape(w.shape[0], len(p), -1)
            fc.weight.data = w3[:, p].reshape(w.shape).clone()
    out.eval()
    return out


def permute_importance(importance: Mapping[str, np.ndarray], perms: Mapping[str, np.ndarray]
                       ) -> dict[str, np.ndarray]:
    """Importance arrays in the permuted filter order (filters are the last axis)."""
    return {k: (np.asarray(v)[..., perms[k]] if k in perms else np.asarray(v))
            for k, v in importance.items()}


def permutations(importance: Mapping[str, np.ndarray], group_sizes: Mapping[str, int],
                 block_sizes: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """One clustering permutation per layer; ``group_sizes`` from estimates.json (PE),
    ``block_sizes`` from :func:`dyfip.costs.mask_block_sizes` (default: no blocks)."""
    blocks = block_sizes or {}
    return {name: cluster_permutation(importance[name], int(group_sizes[name]),
                                      int(blocks.get(name, 0)))
            for name in group_sizes}


def fold_gain(importance: Mapping[str, np.ndarray], estimates: dict, budget: Budget, k: int,
              perms: Mapping[str, np.ndarray] | None = None, mode: str = "class") -> dict:
    """Average cost of class-subset masks for every k-subset, as the tables select them.

    Filter-level masks (group 1): mean enabled neuron folds per layer and mean stage-B cycles.
    Group-level masks (group = PE): mean fraction of the subset's importance kept (the
    importance of the kept groups over that of the same number of best single filters).
    """
    from dyfip.dataflow import stage_cycles
    from dyfip.tables import layer_budgets, select_mask, subset_scores

    imp = permute_importance(importance, perms) if perms else dict(importance)
    stage = estimates["stages"]["stage_b"]
    layers = [la for la in stage["layers"] if la["op"] == "MaskedMVAU"]
    names = [la["layer"] for la in layers]
    n_cls = imp[names[0]].shape[0]
    folds = {n: [] for n in names}
    kept_frac = {n: [] for n in names}
    cycles = []
    budgets = layer_budgets(budget, len(layers))
    for subset in itertools.combinations(range(n_cls), k):
        masks = []
        for la, keep in zip(layers, budgets):
            li = imp[la["layer"]]
            scores = (subset_scores(li, subset, mode) if li.ndim == 3
                      else class_profiles(li)[list(subset)].sum(0))
            m = select_mask(scores, keep, 1)
            masks.append(m)
            folds[la["layer"]].append(enabled_folds(m, la["PE"]))
            g = select_mask(scores, keep, la["PE"])
            best = np.sort(scores)[::-1][: int(g.sum())].sum()
            kept_frac[la["layer"]].append(scores[g].sum() / best if best > 0 else 1.0)
        cycles.append(stage_cycles(stage, masks))
    return {"mean_enabled_folds": {n: float(np.mean(v)) for n, v in folds.items()},
            "neuron_folds": {la["layer"]: la["MH"] // la["PE"] for la in layers},
            "mean_stage_b_cycles": float(np.mean(cycles)),
            "full_stage_b_cycles": int(stage["latency_cycles"]),
            "group_mask_importance_kept": {n: float(np.mean(v)) for n, v in kept_frac.items()}}


def apply_permutation(model, importance: Mapping[str, np.ndarray],
                      group_sizes: Mapping[str, int],
                      block_sizes: Mapping[str, int] | None = None
                      ) -> tuple[object, dict, dict]:
    """Pipeline hook: (permuted model, permuted importance, perms) for PE-group tables.

    Run after ``explain`` and before ``tables`` / mask-aware fine-tuning; ``group_sizes`` is
    ``estimates["group_size"]`` of a ``dyfip build --estimate``.
    """
    perms = permutations(importance, group_sizes, block_sizes)
    return permute_model(model, perms), permute_importance(importance, perms), perms

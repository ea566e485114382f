"""Filter permutation: function unchanged, fewer enabled folds for class-subset masks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.finn


@pytest.fixture(scope="session")
def perm_setup():
    from dyfip.model import load_checkpoint
    from dyfip_hw.testing import calibrated_bundle

    bundle = Path(calibrated_bundle())
    model = load_checkpoint(bundle / "model.pt")
    est = json.loads((bundle / "estimates.json").read_text())
    rng = np.random.default_rng(0)
    # synthetic importance with class structure: each filter matters for 1-2 classes
    imp = {}
    for name, f in zip(model.prunable_layers, model.filters_per_layer):
        own = rng.random((10, f)) * 0.05
        own[rng.integers(0, 10, f), np.arange(f)] += 1.0
        full = np.zeros((10, 10, f))
        full[np.arange(10), np.arange(10)] = own
        imp[name] = full
    return model, est, imp


def test_permutation_preserves_function(perm_setup, digits):
    from dyfip_hw.export import reference_integers
    from dyfip_hw.permute import apply_permutation, permutations

    model, est, imp = perm_setup
    perms = permutations(imp, est["group_size"])
    pm, pimp, perms2 = apply_permutation(model, imp, est["group_size"])
    assert all(np.array_equal(perms[k], perms2[k]) for k in perms)
    assert np.array_equal(pimp["stage_b.0"], imp["stage_b.0"][..., perms["stage_b.0"]])
    for name, p in perms.items():
        assert sorted(p) == list(range(len(p))) and not np.array_equal(p, np.arange(len(p)))
    x = digits.test.images
    rng = np.random.default_rng(1)
    masks = [(rng.random((len(x), f)) < 0.5).astype(np.uint8) for f in model.filters_per_layer]
    _, ref = reference_integers(model, x, masks)
    _, out = reference_integers(pm, x, [m[:, perms[n]] for m, n in
                                        zip(masks, model.prunable_layers)])
    assert np.array_equal(ref, out)
    _, full_ref = reference_integers(model, x)
    _, full_out = reference_integers(pm, x)
    assert np.array_equal(full_ref, full_out)


def test_permutation_reduces_enabled_folds(perm_setup):
    from dyfip_hw.permute import fold_gain, permutations

    _, est, imp = perm_setup
    perms = permutations(imp, est["group_size"])
    base = fold_gain(imp, est, budget=0.25, k=2)
    perm = fold_gain(imp, est, budget=0.25, k=2, perms=perms)
    for layer in base["mean_enabled_folds"]:
        assert perm["mean_enabled_folds"][layer] < base["mean_enabled_folds"][layer]
        assert (perm["group_mask_importance_kept"][layer]
                > base["group_mask_importance_kept"][layer])
    assert perm["mean_stage_b_cycles"] < base["mean_stage_b_cycles"]


def test_block_level_clustering_keeps_groups_and_gathers_classes():
    from dyfip_hw.permute import cluster_permutation

    rng = np.random.default_rng(0)
    owner = rng.permutation(np.repeat(np.arange(4), 8))  # 32 filters, 8 per class
    imp = rng.random((4, 32)) * 0.01
    imp[owner, np.arange(32)] += 1.0
    grouped = cluster_permutation(imp, 2)
    blocked = cluster_permutation(imp, 2, 8)
    assert sorted(blocked) == list(range(32))
    assert {tuple(g) for g in grouped.reshape(-1, 2)} == {tuple(g) for g in
                                                          blocked.reshape(-1, 2)}

    def classes_per_block(perm):
        return np.mean([len(set(b)) for b in owner[perm].reshape(-1, 8)])
    assert classes_per_block(blocked) == 1 < classes_per_block(grouped)
    with pytest.raises(ValueError, match="block size 6 must be a multiple of group size 4"):
        cluster_permutation(imp, 4, 6)


def test_permutation_bad_input(perm_setup):
    from dyfip_hw.permute import cluster_permutation, permute_model

    model, _, imp = perm_setup
    with pytest.raises(ValueError, match="group size 5 does not divide 64"):
        cluster_permutation(imp["stage_b.0"], 5)
    with pytest.raises(ValueError, match="layer stage_b.0: not a permutation"):
        permute_model(model, {"stage_b.0": np.zeros(64, int)})
    with pytest.raises(ValueError, match="unknown layers"):
        permute_model(model, {"stage_a.0": np.arange(16)})

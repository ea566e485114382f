import re

import numpy as np
import pytest

from dyfip.tables import (MaskTable, TableError, keep_count, normalise, select_mask,
                          subset_scores)


def _importance(c=5, filters=(16, 8), seed=0):
    rng = np.random.default_rng(seed)
    return {f"stage_b.{i}": rng.normal(size=(c, c, f)) for i, f in enumerate(filters)}


def test_every_subset_within_budget_at_group_granularity():
    t = MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=[4, 2], model_hash="h")
    assert t.subsets.shape == (10, 2)
    for masks, g in zip(t.masks, (4, 2)):
        kept = masks.sum(axis=1)
        assert (kept == kept[0]).all() and kept[0] == keep_count(masks.shape[1], 0.25, g) * g
        groups = masks.reshape(len(masks), -1, g)
        assert (groups.all(axis=2) == groups.any(axis=2)).all()  # whole groups only
    with pytest.raises(TableError, match="1 group sizes for 2 layers"):
        MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=[4], model_hash="h")


def test_per_layer_budgets(tmp_path):
    """A budget per layer keeps its own share of each layer; it survives save/load and the
    check on load holds every layer to its own budget."""
    t = MaskTable.build(_importance(), k=2, budget=(0.5, 0.25), group_sizes=[4, 2],
                        model_hash="h")
    assert [int(m.sum(axis=1).max()) for m in t.masks] == [8, 2]
    assert [int(m.sum()) for m in t.static_masks] == [8, 2]
    t.save(tmp_path / "t.npz")
    assert MaskTable.load(tmp_path / "t.npz").budget == (0.5, 0.25)
    t.budget = (0.25, 0.25)  # the first layer now keeps twice its budget
    t.save(tmp_path / "over.npz")
    with pytest.raises(TableError, match="stage_b.0 keeps more than its budget of 4"):
        MaskTable.load(tmp_path / "over.npz")
    t.budget = (0.5, 0.25, 0.25)
    t.save(tmp_path / "three.npz")
    with pytest.raises(TableError, match="3 budgets for 2 prunable layers"):
        MaskTable.load(tmp_path / "three.npz")
    with pytest.raises(TableError, match="3 budgets for 2 prunable layers"):
        MaskTable.build(_importance(), k=2, budget=(0.5, 0.25, 0.25), group_sizes=1,
                        model_hash="h")


def test_masks_follow_importance():
    imp = {"l": np.zeros((3, 3, 8))}
    imp["l"][0, 0, 5] = imp["l"][1, 1, 2] = 10.0
    imp["l"][2, 2, 7] = 1.0
    t = MaskTable.build(imp, k=2, budget=0.25, group_sizes=1, model_hash="h")
    assert np.flatnonzero(t.masks_for((0, 1))[0]).tolist() == [2, 5]
    assert t.masks_for([1, 0])[0].tolist() == t.masks_for((0, 1))[0].tolist()


def test_contrast_mode_adds_pair_separation():
    imp = _importance(c=4)["stage_b.0"]
    cls, con = subset_scores(imp, (0, 1), "class"), subset_scores(imp, (0, 1), "contrast")
    assert not np.allclose(cls, con)
    with pytest.raises(ValueError, match="importance mode"):
        subset_scores(imp, (0, 1), "nope")


def test_roundtrip_and_binding(tmp_path):
    t = MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=1, model_hash="abc")
    t.save(tmp_path / "t.npz")
    u = MaskTable.load(tmp_path / "t.npz", model_hash="abc", filters=[16, 8])
    assert all(np.array_equal(a, b) for a, b in zip(t.masks, u.masks))
    assert u.mask_vector((1, 3)).shape == (24,)
    with pytest.raises(TableError, match="built for model abc"):
        MaskTable.load(tmp_path / "t.npz", model_hash="other")
    with pytest.raises(TableError, match=r"layers of \[16, 8\] filters"):
        MaskTable.load(tmp_path / "t.npz", filters=[16, 16])


def test_corrupt_missing_and_oversized_tables(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(TableError, match="corrupt"):
        MaskTable.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="run 'dyfip finetune' first"):
        MaskTable.load(tmp_path / "none.npz")  # finetune writes the tables: no 'dyfip tables'
    t = MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=1, model_hash="h")
    t.masks[0][3, :] = True  # over budget
    t.save(tmp_path / "big.npz")
    with pytest.raises(TableError, match="more than its budget"):
        MaskTable.load(tmp_path / "big.npz")
    with np.load(tmp_path / "big.npz") as z:
        fields = {k: z[k] for k in z.files if k != "subsets"}
    np.savez(tmp_path / "partial.npz", **fields)
    with pytest.raises(TableError, match="missing field 'subsets'"):
        MaskTable.load(tmp_path / "partial.npz")


def test_unknown_class_and_bad_k():
    t = MaskTable.build(_importance(), k=2, budget=0.5, group_sizes=1, model_hash="h")
    with pytest.raises(TableError, match=r"unknown class\(es\) \[7\]"):
        t.masks_for((1, 7))
    with pytest.raises(TableError, match="needs 2 distinct"):
        t.masks_for((1, 1))
    with pytest.raises(TableError, match="k=5"):
        MaskTable.build(_importance(c=5), k=5, budget=0.5, group_sizes=1, model_hash="h")
    with pytest.raises(TableError, match="group size 3"):
        select_mask(np.ones(8), 0.5, 3)


def test_adaptive_table_holds_every_set_of_k_to_k_max_classes(tmp_path):
    t = MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=[4, 2], model_hash="h",
                        k_max=3)
    assert (t.k, t.k_max, t.subsets.shape) == (2, 3, (10 + 10, 3))
    assert t.subsets[0].tolist() == [0, 1, 1]  # a pair, padded
    assert np.array_equal(t.mask_vector((3, 1)), t.mask_vector([1, 3, 3]))
    assert np.array_equal(t.mask_vector((0, 1, 4)), t.mask_vector([4, 1, 0]))
    t.save(tmp_path / "t.npz")
    u = MaskTable.load(tmp_path / "t.npz", model_hash="h")
    assert (u.k, u.k_max) == (2, 3)
    with pytest.raises(TableError, match="needs 2 to 3 distinct"):
        t.masks_for((0, 1, 2, 3))
    bad = MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=1, model_hash="h",
                          k_max=3)
    bad.subsets[0] = [0, 0, 1]  # not canonical: padding must repeat the largest class
    bad.save(tmp_path / "bad.npz")
    with pytest.raises(TableError, match="not distinct sorted"):
        MaskTable.load(tmp_path / "bad.npz")


def test_block_constraint_puts_every_mask_in_the_fewest_blocks(tmp_path):
    free = MaskTable.build(_importance(filters=(32, 8)), k=2, budget=0.25, group_sizes=[2, 2],
                           model_hash="h")
    t = MaskTable.build(_importance(filters=(32, 8)), k=2, budget=0.25, group_sizes=[2, 2],
                        model_hash="h", block_sizes=[8, 2])

    def blocks(masks):
        return masks.reshape(len(masks), -1, 8).any(axis=2).sum(axis=1)
    assert blocks(free.masks[0]).max() > 1  # unconstrained masks spread over blocks
    assert (blocks(t.masks[0]) == 1).all() and blocks(t.static_masks[0][None])[0] == 1
    assert (t.masks[0].sum(axis=1) == 8).all()  # same budget
    assert np.array_equal(t.masks[1], free.masks[1])  # block == group: no constraint
    t.save(tmp_path / "t.npz")
    assert MaskTable.load(tmp_path / "t.npz").block_sizes == [8, 2]
    t.masks[0][0] = np.arange(32) % 8 < 1  # 4 filters in 4 blocks
    t.save(tmp_path / "bad.npz")
    with pytest.raises(TableError, match="masks in 4 blocks of 8 filters; its budget allows 1"):
        MaskTable.load(tmp_path / "bad.npz")
    with pytest.raises(TableError, match="1 block sizes for 2 layers"):
        MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=[4, 2], model_hash="h",
                        block_sizes=[8])
    with pytest.raises(TableError, match="block size 6 must be a multiple of group size 4"):
        select_mask(np.ones(24), 0.25, 4, 6)


def test_block_constraint_picks_the_block_with_the_best_groups():
    scores = np.array([5.0, 0, 0, 0, 3, 3, 0, 0])  # best single group in block 0
    assert np.flatnonzero(select_mask(scores, 0.25, 1, 4)).tolist() == [4, 5]
    assert np.flatnonzero(select_mask(scores, 0.25, 1)).tolist() == [0, 4]


def test_block_constraint_makes_every_mask_cost_the_same_cycles():
    from dyfip.costs import CostModel, LayerGeometry

    geo = [LayerGeometry("a0", "a", 1, 8, 9, 64), LayerGeometry("br", "branch", 8, 4, 4, 1),
           LayerGeometry("b0", "b", 8, 32, 9, 16, prunable=True),
           LayerGeometry("b1", "b", 32, 16, 9, 16, prunable=True)]
    layers = [{"layer": "b0", "op": "MaskedMVAU", "MH": 32, "MW": 72, "PE": 2, "SIMD": 8,
               "KK": 9, "pixels": 16, "cycles": 16 * 16 * 9},
              {"layer": "b1", "op": "MaskedMVAU", "MH": 16, "MW": 288, "PE": 2, "SIMD": 8,
               "KK": 9, "pixels": 16, "cycles": 16 * 8 * 36}]
    cm = CostModel.from_folding(geo, 4, 4, {"stages": {"stage_a": {"layers": []},
                                                       "stage_b": {"layers": layers}}})
    assert (cm.group_sizes, cm.block_sizes) == ([2, 2], [8, 2])
    cycles = {}
    for name, blocks in (("free", None), ("blocks", cm.block_sizes)):
        t = MaskTable.build(_importance(filters=(32, 16)), k=2, budget=0.25,
                            group_sizes=cm.group_sizes, model_hash="h", block_sizes=blocks)
        cycles[name] = [cm.stage_b([m[i] for m in t.masks]).cycles
                        for i in range(len(t.subsets))]
        cycles[name + "_static"] = cm.stage_b(t.static_masks).cycles
    assert set(cycles["blocks"]) == {cycles["blocks_static"]}  # worst case == any mask
    assert max(cycles["free"]) > max(cycles["blocks"])


@pytest.mark.parametrize("field, value", [
    ("version", np.array([1, 1])), ("version", np.array(1.5)), ("group_sizes", np.array([0, 0])),
    ("group_sizes", np.array([1.0, 1.0])), ("block_sizes", np.array([0, 1])),
    ("budget", np.array("abc")), ("budget", np.array(1.5)), ("budget", np.array([0.25, 0.0])),
    ("layer_names", np.array("one")), ("subsets", np.array([["a", "b"]])),
    ("subsets", np.zeros((0, 2), dtype=np.int64)), ("subsets", np.zeros((1, 0), dtype=np.int64)),
    ("subsets", np.zeros(3, dtype=np.int64))])
def test_load_names_the_file_and_the_field_of_a_malformed_table(tmp_path, field, value):
    MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=1, model_hash="h").save(
        tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        fields = {k: z[k] for k in z.files}
    np.savez(tmp_path / "bad.npz", **{**fields, field: value})
    with pytest.raises(TableError, match=rf"{re.escape(str(tmp_path / 'bad.npz'))}.*{field}"):
        MaskTable.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("changes, match", [
    ({"budget": 0}, r"budget 0.0 .* \(0, 1\]"), ({"budget": -1}, r"budget -1.0 .* \(0, 1\]"),
    ({"budget": 1.5}, r"budget 1.5 .* \(0, 1\]"), ({"budget": (0.25, 0)}, r"budget 0.0 "),
    ({"group_sizes": 0}, r"group_sizes \[0, 0\] .* >= 1"),
    ({"group_sizes": [2, 0]}, r"group_sizes \[2, 0\] .* >= 1"),
    ({"block_sizes": [0, 1]}, r"block_sizes \[0, 1\] .* >= 1"),
    ({"importance": {}}, "at least one layer"),
    ({"importance": {"a": np.ones((5, 5, 8)), "b": np.ones((4, 4, 8))}},
     r"same number of classes.*'a': 5, 'b': 4"),
    ({"importance": {"a": np.ones((4, 4, 8)), "b": np.ones((5, 5, 8))}},
     r"same number of classes.*'a': 4, 'b': 5"),
    ({"importance": {"a": np.ones((5, 4, 8))}}, r"shape \(C, C, F\).*'a'.*\(5, 4, 8\)")])
def test_build_rejects_bad_budgets_group_sizes_and_layers(changes, match):
    args = {"importance": _importance(), "k": 2, "budget": 0.25, "group_sizes": 1,
            "model_hash": "h", **changes}
    with pytest.raises(ValueError, match=match):
        MaskTable.build(**args)


def test_masks_for_rejects_non_integer_class_ids():
    t = MaskTable.build(_importance(), k=2, budget=0.5, group_sizes=1, model_hash="h")
    with pytest.raises(TableError, match=r"class ids \[1.7, 2.2\] .* integers"):
        t.masks_for((1.7, 2.2))
    with pytest.raises(TableError, match="integers"):
        t.batch_masks(np.array([[0.0, 1.0]]))
    want = t.mask_vector((1, 2))
    for ids in (np.array([2, 1], dtype=np.int32), (np.uint8(1), np.int64(2)), [np.int16(2), 1]):
        assert np.array_equal(t.mask_vector(ids), want)


def test_build_refuses_what_load_would():
    """Blocks smaller than groups: build fails as load would, not only at deployment."""
    with pytest.raises(TableError, match="block size 1 is not a multiple of its group size 4"):
        MaskTable.build(_importance(), k=2, budget=0.5, group_sizes=4, model_hash="h",
                        block_sizes=[1] * len(_importance()))


def test_static_mask_weighs_every_class_including_the_last():
    """Own attributions (normalised to sum 1 per class): classes 0 and 1 each put 2/3 on
    filter 0 and 1/3 on filter 3, class 2 puts all on filter 3. Summed over all three
    classes: filter 0 4/3, filter 3 2/3 + 1 = 5/3, so the one kept filter is 3 (classes 0
    and 1 alone would keep filter 0)."""
    imp = np.zeros((3, 3, 4))
    imp[0, 0] = imp[1, 1] = [2.0, 0, 0, 1.0]
    imp[2, 2] = [0, 0, 0, 7.0]
    t = MaskTable.build({"l": imp}, k=1, budget=0.25, group_sizes=1, model_hash="h")
    assert t.static_masks[0].tolist() == [False, False, False, True]
    assert np.flatnonzero(t.masks_for((0,))[0]).tolist() == [0]
    assert np.flatnonzero(t.masks_for((2,))[0]).tolist() == [3]


def test_importance_is_normalised_per_image_class():
    """Each image class's (C, F) block is divided by the abs sum of its own attributions:
    class 0 by |2| + |-2| + |4| = 8, class 1 by 1."""
    imp = np.zeros((2, 2, 3))
    imp[0, 0] = [2.0, -2.0, 4.0]
    imp[0, 1] = [8.0, 0.0, 0.0]
    imp[1, 1] = [0.0, 1.0, 0.0]
    imp[1, 0] = [0.0, 0.0, 3.0]
    assert normalise(imp).tolist() == [[[0.25, -0.25, 0.5], [1.0, 0.0, 0.0]],
                                       [[0.0, 0.0, 3.0], [0.0, 1.0, 0.0]]]
    assert subset_scores(imp, (0, 1), "class").tolist() == [0.25, 0.75, 0.5]
    assert normalise(np.zeros((2, 2, 3))).tolist() == np.zeros((2, 2, 3)).tolist()
    # unnormalised, class 0's larger attributions would win: [2, -1, 4] keeps filter 2;
    # normalised, filter 1 (class 1's only filter) wins
    t = MaskTable.build({"l": imp}, k=1, budget=1 / 3, group_sizes=1, model_hash="h")
    assert t.static_masks[0].tolist() == [False, True, False]


def test_contrast_scores_hand_computed():
    """Normalised: own rows [0.5, 0.5] (class 0, scale 2) and [1, 0] (class 1, scale 2);
    cross rows imp[0, 1] = [1, 0], imp[1, 0] = [0, 2]. class: [1.5, 0.5]; contrast adds
    |[0.5, 0.5] - [1, 0]| = [0.5, 0.5] and |[1, 0] - [0, 2]| = [1, 2]: [3, 3]."""
    imp = np.zeros((2, 2, 2))
    imp[0, 0], imp[0, 1] = [1.0, 1.0], [2.0, 0.0]
    imp[1, 1], imp[1, 0] = [2.0, 0.0], [0.0, 4.0]
    assert subset_scores(imp, (0, 1), "class").tolist() == [1.5, 0.5]
    assert subset_scores(imp, (0, 1), "contrast").tolist() == [3.0, 3.0]
    assert subset_scores(imp, (1,), "contrast").tolist() == [1.0, 0.0]  # no pairs


@pytest.mark.parametrize("filters, budget, group, kept", [
    (16, 0.3, 1, 4),  # 4.8 filters -> 4
    (16, 0.3, 2, 2),  # 2.4 groups -> 2 (4 filters)
    (16, 0.3, 4, 1),  # 1.2 groups -> 1 (4 filters)
    (16, 0.3, 8, 1),  # 0.6 groups -> at least one
    (16, 0.25, 1, 4), (16, 0.25, 4, 1), (16, 1.0, 4, 4),
    (100, 0.29, 1, 29),  # 0.29 * 100 = 28.999999999999996 in floats: still 29
    (10, 0.99, 1, 9), (10, 0.01, 1, 1)])
def test_keep_count_floors_whole_groups(filters, budget, group, kept):
    assert keep_count(filters, budget, group) == kept
    scores = np.arange(filters, dtype=np.float64)
    assert select_mask(scores, budget, group).sum() == kept * group


def test_keep_count_floor_in_built_tables():
    """0.3 of 16 filters: 4 filters in groups of 1, 4 in groups of 2, 4 in groups of 4."""
    for group in (1, 2, 4):
        t = MaskTable.build(_importance(filters=(16,)), k=2, budget=0.3, group_sizes=group,
                            model_hash="h")
        assert (t.masks[0].sum(axis=1) == 4).all() and t.static_masks[0].sum() == 4


def test_validate_limits_are_exact():
    """32 filters, groups of 2, blocks of 8, budget 0.375: 6 groups (12 filters) in at
    most 2 blocks. At the limits the table passes; one group more fails."""
    t = MaskTable.build(_importance(c=3, filters=(32,)), k=1, budget=0.375, group_sizes=2,
                        model_hash="h", block_sizes=[8])
    assert (t.masks[0].sum(axis=1) == 12).all()
    row = np.zeros(32, bool)
    row[0:8] = row[8:12] = True  # 12 filters in blocks 0 and 1: exactly the limits
    t.masks[0][0] = row
    t.validate()
    over = row.copy()
    over[12:14] = True  # a 7th group, still in 2 blocks
    t.masks[0][0] = over
    with pytest.raises(TableError, match="keeps more than its budget of 12 filters"):
        t.validate()
    spread = np.zeros(32, bool)
    spread[[0, 1, 8, 9, 16, 17]] = True  # 3 groups, under budget, in 3 blocks
    t.masks[0][0] = spread
    with pytest.raises(TableError, match="masks in 3 blocks of 8 filters; its budget allows 2"):
        t.validate()
    t.masks[0][0] = row
    t.static_masks[0] = spread  # the static mask is held to the same limits
    with pytest.raises(TableError, match="masks in 3 blocks"):
        t.validate()
    t.static_masks[0] = over
    with pytest.raises(TableError, match="keeps more than its budget of 12 filters"):
        t.validate()


def test_a_table_missing_a_sets_mask_is_refused(tmp_path):
    """Distinct sorted sets are not enough: every set of k..k_max classes needs its row,
    else the driver meets a candidate set without a mask at run time."""
    import dataclasses

    t = MaskTable.build(_importance(), k=2, budget=0.25, group_sizes=1, model_hash="h")
    assert len(t.subsets) == 10  # 5 classes, pairs
    keep = np.arange(10) != 3  # drop the set {0, 4}
    short = dataclasses.replace(t, subsets=t.subsets[keep], masks=[m[keep] for m in t.masks])
    with pytest.raises(TableError, match="masks for 9 class sets, but 5 classes have 10 sets"):
        short.validate()

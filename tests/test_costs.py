import numpy as np
import pytest

from dyfip.costs import CostModel, LayerGeometry, PathCost

GEO = [LayerGeometry("a0", "a", 1, 8, 9, 64), LayerGeometry("br", "branch", 8, 4, 4, 1),
       LayerGeometry("b0", "b", 8, 16, 9, 16, prunable=True),
       LayerGeometry("b1", "b", 16, 16, 9, 16, prunable=True),
       LayerGeometry("cls", "b", 16, 4, 4, 1)]


def test_full_costs_and_mask_savings():
    cm = CostModel.from_folding(GEO, 4, 4)
    full = cm.stage_b()
    assert full.macs == sum(g.macs() for g in GEO if g.stage == "b")
    masks = [np.arange(16) < 4, np.arange(16) < 4]
    pruned = cm.stage_b(masks)
    # b0: all 8 inputs x 4 filters; b1: 4 inputs x 4 filters; cls: 4 input channels
    assert pruned.macs == 16 * 9 * 8 * 4 + 16 * 9 * 4 * 4 + 4 * 4 * 4
    assert pruned.cycles < full.cycles / 2
    # the classifier is no filter-enable layer: it costs its full cycles either way
    cls = next(la for la in cm.stages["stage_b"]["layers"] if la["layer"] == "cls")
    assert cls["cycles"] == 1 * (4 // 4) * (16 * 4 // 4)
    assert cm.group_sizes == [4, 4]


def test_costs_from_a_finn_estimate_use_its_folding():
    est_layers = [{"layer": "b0", "op": "MaskedMVAU", "MH": 16, "MW": 72, "PE": 2, "SIMD": 8,
                   "KK": 9, "pixels": 16, "cycles": 16 * 8 * 9},
                  {"layer": "b1", "op": "MaskedMVAU", "MH": 16, "MW": 144, "PE": 16, "SIMD": 1,
                   "KK": 9, "pixels": 16, "cycles": 16 * 144},
                  {"layer": "cls", "op": "MVAU", "MH": 4, "MW": 64, "PE": 1, "SIMD": 1,
                   "KK": 4, "pixels": 1, "cycles": 256}]
    est = {"board": "X", "stages": {"stage_a": {"layers": []}, "stage_b": {"layers": est_layers}}}
    cm = CostModel.from_folding(GEO, 4, 4, est)
    assert cm.group_sizes == [2, 16] and cm.stage_a.cycles == 0
    assert cm.stage_b().cycles == 16 * 8 * 9 + 16 * 144 + 256
    assert "FINN folding for X" in cm.source


def test_mask_errors():
    cm = CostModel.from_folding(GEO, 4, 4)
    with pytest.raises(ValueError, match="expected 2 layer masks"):
        cm.stage_b([np.ones(16, bool)])
    with pytest.raises(ValueError, match="layer b1: mask of length 8"):
        cm.stage_b([np.ones(16, bool), np.ones(8, bool)])


def test_worst_case_takes_each_figure_over_every_path():
    """The path with the most cycles need not be the one with the most MACs."""
    paths = [PathCost(macs=100, cycles=7), PathCost(macs=90, cycles=9), PathCost(macs=95, cycles=8)]
    assert PathCost.worst(paths) == PathCost(macs=100, cycles=9)

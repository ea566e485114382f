import numpy as np
import pytest

from dyfip.costs import CostModel, LayerGeometry

GEO = [LayerGeometry("a0", "a", 1, 8, 9, 64), LayerGeometry("br", "branch", 8, 4, 4, 1),
       LayerGeometry("b0", "b", 8, 16, 9, 16, prunable=True),
       LayerGeometry("b1", "b", 16, 16, 9, 16, prunable=True),
       LayerGeometry("cls", "b", 16, 4, 4, 1)]


def test_full_costs_and_mask_savings():
    cm = CostModel.with_default_folding(GEO, 4, 4)
    full = cm.stage_b()
    assert full.macs == sum(g.macs() for g in GEO if g.stage == "b")
    masks = [np.arange(16) < 4, np.arange(16) < 4]
    pruned = cm.stage_b(masks)
    # b0: all 8 inputs x 4 filters; b1: 4 inputs x 4 filters; cls: 4 input channels
    assert pruned.macs == 16 * 9 * 8 * 4 + 16 * 9 * 4 * 4 + 4 * 4 * 4
    assert pruned.cycles < full.cycles / 3


def test_mask_errors():
    cm = CostModel.with_default_folding(GEO, 4, 4)
    with pytest.raises(ValueError, match="expected 2 layer masks"):
        cm.stage_b([np.ones(16, bool)])
    with pytest.raises(ValueError, match="layer b1: mask of length 8"):
        cm.stage_b([np.ones(16, bool), np.ones(8, bool)])

"""RTL MaskSplit (plain-Verilog top rendered by dyfip_hw.rtl_codegen) against
dyfip.dataflow.split_stage_mask: every layer's word, with input gaps and output stalls."""
from __future__ import annotations

import numpy as np
import pytest

from dyfip.dataflow import split_stage_mask
from dyfip_hw.rtl_codegen import mask_split_verilog, pack_words, unpack_words
from dyfip_hw.rtl_sim import TB_DIR, build, run_tb, sim_build_root

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("filters, first, in_gap, out_stall", [
    ([6, 5, 9], 3, 0.0, 0.0),  # padded words, back to back
    ([6, 5, 9], 3, 0.3, 0.5),  # gaps in and stalls out: nothing lost, nothing repeated
    ([8, 16], 8, 0.0, 0.3),  # byte-aligned words
])
def test_mask_split_rtl_matches_the_reference(filters, first, in_gap, out_stall):
    top = "ms_" + "_".join(map(str, [*filters, first]))
    build_dir = sim_build_root() / top
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{top}.v"
    text = mask_split_verilog(top, filters, first)
    busifs = ":".join(["in0_V", *(f"out{i}_V" for i in range(len(filters)))])
    assert f"ASSOCIATED_BUSIF {busifs}," in text  # Vivado ties every stream to ap_clk
    source.write_text(text)
    runner = build([source], top, build_dir)
    masks = np.random.default_rng(len(filters)).integers(0, 2, (24, sum(filters)))
    stim = {"in_words": pack_words(masks, 1), "layers": len(filters), "in_gap": in_gap,
            "out_stall": out_stall, "seed": 1}
    result = run_tb(runner, top, "tb_mask_split", TB_DIR, build_dir, stim,
                    tag=f"gap{in_gap}_stall{out_stall}")
    want = split_stage_mask(masks, filters, first)
    for layer, (words, expected) in enumerate(zip(result["words"], want)):
        assert len(words) == len(masks), f"layer {layer}: {len(words)} words"
        np.testing.assert_array_equal(unpack_words(words, expected.shape[1], 1), expected)
        assert max(words) < 1 << expected.shape[1]  # the byte padding stays zero

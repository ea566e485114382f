"""dyfip_hw.rtl_codegen: word packing, memory layouts, wrapper, accumulator width."""
from __future__ import annotations

import re

import numpy as np
import pytest

from dyfip_hw import rtl_codegen as cg

pytestmark = pytest.mark.rtl
P = cg.MvauRtlParams(pe=2, simd=3, mw=12, mh=4, kk=2, num_pixels=2, out_bits=2, name="mm_t")


def test_pack_unpack_round_trip() -> None:
    v = np.random.default_rng(0).integers(-8, 8, (5, 7))
    assert np.array_equal(cg.unpack_words(cg.pack_words(v, 4), 7, 4, signed=True), v)
    assert cg.pack_words(np.array([[1, 0, 1]]), 1) == [0b101]  # element i at bit i


def test_mask_word_bit_order() -> None:
    mask = np.zeros((1, P.mh + P.ch), np.int64)
    mask[0, 1] = 1  # filter 1
    mask[0, P.mh + 2] = 1  # channel 2
    assert cg.mask_words(mask, P) == [(1 << 1) | (1 << (P.mh + 2))]


def test_weight_and_threshold_memory_layout() -> None:
    w = np.arange(P.mw * P.mh).reshape(P.mw, P.mh) % 7 - 3
    lines = cg.weight_mem_lines(w, P)
    sf = P.mw // P.simd
    assert len(lines) == (P.mh // P.pe) * sf
    word = int(lines[1 * sf + 2], 16)  # neuron fold 1, synapse fold 2
    got = cg.unpack_words([word], P.pe * P.simd, 4, signed=True).reshape(P.pe, P.simd)
    assert np.array_equal(got, w[2 * P.simd:3 * P.simd, 1 * P.pe:2 * P.pe].T)
    p, _ = cg.resolve_params(P, w, np.zeros((P.mh, 3), np.int64))
    th = np.arange(P.mh * 3).reshape(P.mh, 3)
    word = int(cg.threshold_mem_lines(th, p)[1], 16)
    assert np.array_equal(cg.unpack_words([word], 6, p.accu_bits).ravel(), th[2:4].ravel())


def test_accumulator_width_and_threshold_clipping() -> None:
    w = np.full((P.mw, P.mh), -8)
    lo, hi = cg.accumulator_range(w, P.act_bits)
    assert (lo, hi) == (-8 * 15 * P.mw, 0)
    th = np.tile([-10 ** 6, 0, 10 ** 6], (P.mh, 1))
    p, t = cg.resolve_params(P, w, th)
    assert t.min() == lo and t.max() == hi + 1
    assert p.accu_bits == cg.signed_bits(lo, hi + 1)
    # lo = -8 * 15 * 12 = -1440, thresholds up to hi + 1 = 1: 12 signed bits
    with pytest.raises(ValueError, match=r"^accu_bits=4 < 12 bits needed for exact accumulation$"):
        cg.resolve_params(cg.MvauRtlParams(**{**P.__dict__, "accu_bits": 4}), w, th)
    with pytest.raises(ValueError, match=re.escape("weights must be (MW, MH) = (12, 4); "
                                                   "got (12, 2)")):
        cg.resolve_params(P, w[:, :2], th)


def test_generate_writes_finn_style_files(tmp_path) -> None:
    w = np.ones((P.mw, P.mh), np.int64)
    th = np.tile([0, 1, 2], (P.mh, 1))
    files = cg.generate_masked_mvau_rtl(tmp_path, P, w, th, mem_prefix="./")
    assert [f.name for f in files] == ["dyfip_fifo.sv", "masked_mvau.sv", "mm_t.v"]
    assert files == cg.rtl_file_list(tmp_path, "mm_t") and all(f.exists() for f in files)
    text = files[-1].read_text()
    for port in ("ap_clk", "ap_rst_n", "in0_V_TDATA", "in1_V_TREADY", "out0_V_TVALID"):
        assert port in text
    assert '"./mm_t_weights.dat"' in text and "$" not in text.replace("$readmemh", "")
    assert all(f.exists() for f in cg.mem_files(tmp_path, "mm_t"))

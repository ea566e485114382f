"""RTL masked MVAU (hw/dyfip_hw/rtl/masked_mvau.sv) against dyfip.kernels: bit-exact, cycles, stalls."""
from __future__ import annotations

import numpy as np
import pytest

from dyfip.kernels import masked_mvau, masked_mvau_cycles
from dyfip_hw.rtl_codegen import CORE_SOURCES, RTL_DIR, MvauRtlParams, accumulator_range
from dyfip_hw.rtl_sim import sim_build_root, simulate_masked_mvau, verilator_lint

pytestmark = pytest.mark.rtl

# One Verilator build per case (cached in sim_build/), shared by all tests below; a fixed
# accu_bits keeps the HDL (and so the build) independent of the random weights.
CASES = {
    "pe1_simd1": MvauRtlParams(pe=1, simd=1, mw=6, mh=4, kk=2, num_pixels=2, out_bits=2,
                               accu_bits=12, name="mmv_pe1_simd1"),
    "conv": MvauRtlParams(pe=2, simd=2, mw=12, mh=8, kk=3, num_pixels=3, out_bits=2,
                          accu_bits=12, name="mmv_conv"),
    # PE = MH (one neuron fold), fully connected, raw accumulator output (no thresholds)
    "pe_eq_mh_noact": MvauRtlParams(pe=4, simd=4, mw=8, mh=4, num_pixels=2, weight_bits=3,
                                    act_bits=2, use_thresholds=False, accu_bits=10,
                                    name="mmv_pe_eq_mh"),
    # more neuron folds than synapse folds (NF=8 > SF=2): with every filter off the zero
    # output words, not the input, set the cycles (max(SF, NF))
    "nf_gt_sf": MvauRtlParams(pe=1, simd=2, mw=4, mh=8, num_pixels=2, out_bits=2,
                              accu_bits=12, name="mmv_nf_gt_sf"),
}


def random_layer(p: MvauRtlParams, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Full-range signed weights; ascending thresholds spread over the reachable range."""
    half = 2 ** (p.weight_bits - 1)
    w = rng.integers(-half, half, (p.mw, p.mh))
    if not p.use_thresholds:
        return w, None
    lo, hi = accumulator_range(w, p.act_bits)
    th = np.sort(rng.integers(lo // 3, hi // 3 + 2, (p.mh, p.n_thresholds)), axis=1)
    return w, th


def special_masks(p: MvauRtlParams, rng: np.random.Generator) -> np.ndarray:
    """All on, all off, filters on / channels off, one filter, one channel group, random."""
    mh, ch = p.mh, p.ch
    rows = [np.ones(mh + ch), np.zeros(mh + ch), np.r_[np.ones(mh), np.zeros(ch)],
            np.r_[np.eye(mh)[mh - 1], np.ones(ch)], np.r_[np.ones(mh), np.eye(ch)[0]],
            np.r_[np.zeros(mh), np.ones(ch)]]
    rows += [rng.integers(0, 2, mh + ch) for _ in range(3)]
    group = rng.integers(0, 2, mh // p.pe).repeat(p.pe)  # hardware-granular filter mask
    rows.append(np.r_[group, rng.integers(0, 2, ch)])
    return np.array(rows, dtype=np.int64)


def case_data(p: MvauRtlParams, n: int, seed: int, masks: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    w, th = random_layer(p, rng)
    x = rng.integers(0, 2 ** p.act_bits, (n, p.num_pixels, p.mw))
    if masks is None:
        masks = rng.integers(0, 2, (n, p.mh + p.ch))
        masks[0] = 1
    return w, th, x, masks


def build_dir(case: str):
    return sim_build_root() / "masked_mvau" / case


@pytest.mark.parametrize("case", list(CASES))
def test_bit_exact_under_backpressure(case: str) -> None:
    p = CASES[case]
    w, th, x, masks = case_data(p, 8, seed=1)
    res = simulate_masked_mvau(p, w, th, x, masks, build_dir(case), in_gap=0.3,
                               mask_gap=0.5, out_stall=0.4, seed=2, tag="backpressure")
    assert res.extra_words == 0
    np.testing.assert_array_equal(res.outputs, masked_mvau(x, w, th, masks, kk=p.kk))


@pytest.mark.parametrize("case", list(CASES))
def test_cycles_match_model(case: str) -> None:
    """No backpressure: every image takes exactly masked_mvau_cycles (the first +1 at most)."""
    p = CASES[case]
    masks = special_masks(p, np.random.default_rng(3))
    masks = np.r_[masks, np.ones((1, p.mh + p.ch), np.int64)]  # the last image only ends
    w, th, x, masks = case_data(p, len(masks), seed=4, masks=masks)
    res = simulate_masked_mvau(p, w, th, x, masks, build_dir(case), tag="cycles")
    np.testing.assert_array_equal(res.outputs, masked_mvau(x, w, th, masks, kk=p.kk))
    measured = res.image_cycles(p.num_pixels * p.fold.synapse_folds)
    model = np.array([masked_mvau_cycles(p.fold, m[:p.mh], m[p.mh:], p.num_pixels)
                      for m in masks[:-1]])
    # cycle exact; the first image may include the one-off cycle to take in the first mask
    assert measured[0] - model[0] in (0, 1)
    np.testing.assert_array_equal(measured[1:], model[1:])
    assert abs(measured.sum() - model.sum()) / model.sum() <= 0.05


def test_short_mask_stream_stalls() -> None:
    """A missing mask word stalls the unit (no output) until it arrives; then exact results."""
    p = CASES["conv"]
    w, th, x, masks = case_data(p, 3, seed=5)
    release = 1000
    res = simulate_masked_mvau(p, w, th, x, masks, build_dir("conv"), tag="stall",
                               mask_release=[0, 0, release])
    per_image = p.num_pixels * p.fold.neuron_folds
    cycles = np.asarray(res.out_cycles)
    assert (cycles < release).sum() == 2 * per_image  # two images, then nothing
    assert cycles[2 * per_image - 1] < release - 500  # ... for a long time
    assert res.extra_words == 0
    np.testing.assert_array_equal(res.outputs, masked_mvau(x, w, th, masks, kk=p.kk))


def test_missing_mask_never_outputs_garbage() -> None:
    p = CASES["pe1_simd1"]
    w, th, x, masks = case_data(p, 3, seed=6)
    res = simulate_masked_mvau(p, w, th, x, masks[:2], build_dir("pe1_simd1"), tag="short",
                               max_cycles=2000, partial=True)
    n_first = 2 * p.num_pixels * p.fold.neuron_folds
    assert len(res.out_cycles) == n_first
    assert res.outputs.shape[0] == 2  # only the complete images, no zero-filled third
    np.testing.assert_array_equal(res.outputs, masked_mvau(x[:2], w, th, masks[:2], kk=p.kk))


def test_too_few_cycles_raise() -> None:
    """Output words missing at ``max_cycles`` are an error, not zeros."""
    p = CASES["pe1_simd1"]
    w, th, x, masks = case_data(p, 3, seed=6)
    n_out = 3 * p.num_pixels * p.fold.neuron_folds
    with pytest.raises(RuntimeError, match=rf"\d+ of {n_out} output words arrived within "
                                           r"max_cycles=20\b"):
        simulate_masked_mvau(p, w, th, x, masks, build_dir("pe1_simd1"), tag="few_cycles",
                             max_cycles=20)


def test_missing_words_counted() -> None:
    """The check itself (no simulator): complete images, or the error naming the counts."""
    from dyfip_hw.rtl_sim import complete_images

    assert complete_images(12, 12, 3, 100, partial=False) == 3
    assert complete_images(9, 12, 3, 100, partial=True) == 2
    with pytest.raises(RuntimeError, match=r"9 of 12 output words arrived within max_cycles=100"):
        complete_images(9, 12, 3, 100, partial=False)


@pytest.mark.parametrize("params, message", [
    (dict(PE=3, MH=8, MW=12, KK=3, SIMD=2), "PE=3 does not divide MH=8"),
    (dict(PE=2, MH=8, MW=12, KK=3, SIMD=3), "SIMD=3 does not divide the CH=4"),
    (dict(PE=2, MH=8, MW=10, KK=3, SIMD=1), "MW=10 is not a multiple of KK=3"),
])
def test_elaboration_error_for_non_dividing_parameters(params: dict, message: str) -> None:
    res = verilator_lint([RTL_DIR / f for f in CORE_SOURCES], "masked_mvau", params)
    assert res.returncode != 0
    assert message in res.stderr


def test_python_params_reject_non_dividing() -> None:
    with pytest.raises(ValueError, match="^PE=3 does not divide MH=8$"):
        MvauRtlParams(pe=3, simd=1, mw=4, mh=8)
    with pytest.raises(ValueError, match="^SIMD=3 does not divide the 4 input channels$"):
        MvauRtlParams(pe=1, simd=3, mw=4, mh=8)

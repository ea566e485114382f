import numpy as np
import pytest

from dyfip.kernels import Folding, ideal_masked_cycles, masked_mvau, masked_mvau_cycles


def _layer(rng, n=3, p=4, kk=9, ch=8, mh=12, t=15):
    x = rng.integers(0, 16, (n, p, kk * ch))
    w = rng.integers(-8, 8, (kk * ch, mh))
    thr = np.sort(rng.integers(-200, 200, (mh, t)), axis=1)
    return x, w, thr


def test_all_enabled_equals_dense_thresholding():
    rng = np.random.default_rng(0)
    x, w, thr = _layer(rng)
    mask = np.ones((3, 12 + 8), np.uint8)
    acc = x @ w
    want = (acc[..., None] >= thr).sum(-1)
    assert np.array_equal(masked_mvau(x, w, thr, mask, kk=9), want)


def test_disabled_filters_zero_and_disabled_channels_skipped():
    rng = np.random.default_rng(1)
    x, w, thr = _layer(rng)
    filt = rng.random((3, 12)) < 0.5
    chan = rng.random((3, 8)) < 0.5
    out = masked_mvau(x, w, thr, np.concatenate([filt, chan], 1), kk=9)
    assert (out[~np.broadcast_to(filt[:, None], out.shape)] == 0).all()
    x_zeroed = x * np.tile(chan, (1, 9))[:, None, :]
    want = np.where(filt[:, None], ((x_zeroed @ w)[..., None] >= thr).sum(-1), 0)
    assert np.array_equal(out, want)


def test_mask_shape_and_values_checked():
    rng = np.random.default_rng(2)
    x, w, thr = _layer(rng)
    with pytest.raises(ValueError, match=r"\(N, 20\)"):
        masked_mvau(x, w, thr, np.ones((3, 19)), kk=9)
    with pytest.raises(ValueError, match="0 or 1"):
        masked_mvau(x, w, thr, np.full((3, 20), 2), kk=9)


def test_cycles_full_is_finn_and_masks_cut_cycles():
    f = Folding(mh=64, mw=9 * 32, pe=4, simd=4, kk=9)
    assert masked_mvau_cycles(f, pixels=16) == 16 * f.neuron_folds * f.synapse_folds
    filt = np.zeros(64, bool)
    filt[:4] = True
    chan = np.zeros(32, bool)
    chan[:4] = True
    masked = masked_mvau_cycles(f, filt, chan, pixels=16)
    assert ideal_masked_cycles(f, filt, chan, 16) <= masked < masked_mvau_cycles(f, pixels=16) / 8


def test_folding_must_divide():
    with pytest.raises(ValueError, match="PE=5 does not divide MH=64"):
        Folding(mh=64, mw=288, pe=5, simd=4, kk=9)
    with pytest.raises(ValueError, match="SIMD=3"):
        Folding(mh=64, mw=288, pe=4, simd=3, kk=9)


@pytest.mark.parametrize("filters_on, channels_on, per_pixel", [
    ([], [0, 1, 2, 3], 8),  # nothing on: max(SF=2, NF=8) = 8 (the zero words dominate)
    ([], [], 8),
    ([0], [0, 1, 2, 3], 9),  # SF + 0 further folds + 7 zero words
    ([7], [0, 1, 2, 3], 9),
    ([0, 1], [0, 1, 2, 3], 10),  # 2 + 1 * 2 + 6
    ([0, 1], [], 9),  # 2 + 1 * max(0, 1) + 6
    ([0, 1, 2], [0, 1], 9),  # 2 + 2 * 1 (one of two synapse folds on) + 5
    ([0, 1, 2], [1, 2], 11),  # channels 1 and 2 lie in both synapse folds: 2 + 2 * 2 + 5
    (list(range(8)), [0, 1, 2, 3], 16)])  # NF * SF
def test_cycles_when_neuron_folds_outnumber_synapse_folds(filters_on, channels_on, per_pixel):
    """MH=8, PE=1: NF=8; MW=4, SIMD=2: SF=2 (NF > SF), hand-computed per pixel."""
    f = Folding(mh=8, mw=4, pe=1, simd=2)
    assert (f.neuron_folds, f.synapse_folds) == (8, 2)
    filt, chan = np.zeros(8, bool), np.zeros(4, bool)
    filt[filters_on], chan[channels_on] = True, True
    assert masked_mvau_cycles(f, filt, chan, pixels=3) == 3 * per_pixel


def test_cycles_all_off_drain_the_input_when_synapse_folds_dominate():
    f = Folding(mh=4, mw=12, pe=2, simd=2, kk=3)  # NF=2, SF=6
    assert masked_mvau_cycles(f, np.zeros(4, bool), np.ones(4, bool), pixels=2) == 2 * 6
    # one neuron fold on, every channel off: SF + 0 + 1 zero word
    assert masked_mvau_cycles(f, np.r_[1, 1, 0, 0].astype(bool), np.zeros(4, bool)) == 7


def test_input_shapes_checked():
    x, w, thr = np.ones((2, 3, 6), int), np.ones((6, 4), int), np.zeros((4, 3), int)
    mask = np.ones((2, 4 + 3), int)  # MH=4, CH=6/KK=3
    assert masked_mvau(x, w, thr, mask, kk=2).shape == (2, 3, 4)
    assert masked_mvau(x, w, None, mask, kk=2)[0, 0].tolist() == [6, 6, 6, 6]
    with pytest.raises(ValueError, match=r"input must be \(N, P, MW\); got shape \(3, 6\)"):
        masked_mvau(x[0], w, thr, mask, kk=2)
    with pytest.raises(ValueError, match="input vector length 6 != MW=5 of the weights"):
        masked_mvau(x, w[:5], thr, mask, kk=2)
    with pytest.raises(ValueError, match="MW=6 is not a multiple of KK=4"):
        masked_mvau(x, w, thr, mask, kk=4)
    with pytest.raises(ValueError, match=r"thresholds must be \(MH=4, steps\); got shape \(3, 3\)"):
        masked_mvau(x, w, thr[:3], mask, kk=2)
    with pytest.raises(ValueError, match=r"thresholds must be \(MH=4, steps\); got shape \(4,\)"):
        masked_mvau(x, w, thr[:, 0], mask, kk=2)  # one threshold per filter, not broadcast
    with pytest.raises(ValueError, match=r"weights must be \(MW, MH\); got shape \(24,\)"):
        masked_mvau(x, w.ravel(), thr, mask, kk=2)
    with pytest.raises(ValueError, match="1 masks for 2 images"):
        masked_mvau(x, w, thr, mask[:1], kk=2)
    with pytest.raises(ValueError, match=r"enables of length 7/4 for MH=8/CH=4"):
        masked_mvau_cycles(Folding(mh=8, mw=4, pe=1, simd=2), np.ones(7, bool))

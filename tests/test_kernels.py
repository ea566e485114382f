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

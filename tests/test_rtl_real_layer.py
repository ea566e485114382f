"""A real digits layer (stage_b.0: conv 32->64, 3x3, 4x4 output) through the RTL MVAU.

Integer weights are the Brevitas layer's own (``quant_weight().int()``); inputs are the
real stage-A activations of digits test images; thresholds fold the conv scales, BatchNorm
and the 4-bit QuantReLU into 15 ascending integers per filter (as FINN's streamlining does,
up to rounding ties; filters with negative BN gamma get negated weights); masks come from ``dyfip.tables.select_mask`` at the hardware's PE
granularity (or from build/demo/tables.npz when a pipeline run left one). The model is the
trained build/demo/model.pt when present, else a fresh model with BatchNorm statistics
calibrated on digits. The HDL is generated into a temporary directory and simulated.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dyfip.config import preset  # noqa: E402
from dyfip.data import load_digits  # noqa: E402
from dyfip.kernels import masked_mvau, masked_mvau_cycles  # noqa: E402
from dyfip.model import build_model, load_checkpoint  # noqa: E402
from dyfip.tables import select_mask  # noqa: E402
from dyfip_hw.rtl_codegen import MvauRtlParams  # noqa: E402
from dyfip_hw.rtl_sim import REPO_ROOT, simulate_masked_mvau  # noqa: E402

pytestmark = pytest.mark.rtl
N_IMAGES = 20


def digits_model():
    ckpt = REPO_ROOT / "build" / "demo" / "model.pt"
    if ckpt.exists():
        try:
            return load_checkpoint(ckpt), "trained (build/demo/model.pt)"
        except Exception:  # noqa: BLE001 - a stale checkpoint must not break this test
            pass
    model = build_model(preset("digits"), (1, 8, 8), 10)
    model.train()
    with torch.no_grad():  # calibrate BatchNorm running statistics on real images
        model(torch.as_tensor(load_digits().train.images[:512]).float() / 255.0)
    return model.eval(), "fresh, BatchNorm calibrated"


def im2col(x: np.ndarray, k: int, pad: int) -> np.ndarray:
    """(N, C, H, W) -> (N, P, K*K*C) in FINN order: kernel position, then channel fastest."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    cols = [xp[:, :, ky:ky + oh, kx:kx + ow] for ky in range(k) for kx in range(k)]
    return np.stack(cols, 1).transpose(0, 3, 4, 1, 2).reshape(n, oh * ow, k * k * c)


def integer_layer(model, images: np.ndarray):
    """(x ints (N, P, MW), weights (MW, MH), thresholds (MH, 15), reference ints (N, P, MH))."""
    block = model.stage_b[0]
    with torch.no_grad():
        feats = model.features(torch.as_tensor(images).float() / 255.0)
        ref = block.act(block.bn(block.conv(feats)))
        s_in = float(model.stage_a[-1].act.act_quant.scale())
        s_out = float(block.act.act_quant.scale())
        qw = block.conv.quant_weight()
        w_int = qw.int().numpy().astype(np.int64)  # (MH, CH, 3, 3)
        s_w = float(qw.scale)
        bn = block.bn
        gamma, beta = bn.weight.numpy(), bn.bias.numpy()
        mu, std = bn.running_mean.numpy(), np.sqrt(bn.running_var.numpy() + bn.eps)
    x = np.rint(feats.numpy() / s_in).astype(np.int64)
    pad = block.spec.padding
    x_cols = im2col(x, 3, pad)
    weights = w_int.transpose(2, 3, 1, 0).reshape(-1, w_int.shape[0])  # (ky, kx, c) x MH
    levels = 2 ** 4 - 1
    t = np.arange(1, levels + 1) - 0.5  # output >= t  <=>  bn(z) / s_out >= t - 0.5
    with np.errstate(divide="ignore"):
        z = ((t[None] * s_out - beta[:, None]) * std[:, None] / gamma[:, None] + mu[:, None])
    z = z / (s_in * s_w)  # in accumulator units; for gamma < 0 the test is acc <= z
    neg = gamma < 0  # negate those filters (weights are narrow range) to keep acc >= thr
    assert weights.min() > -8, "weight negation needs narrow-range weights"
    weights[:, neg] *= -1
    thresholds = np.ceil(np.where(neg[:, None], -z, z))
    thresholds = np.clip(np.nan_to_num(thresholds), -2 ** 30, 2 ** 30).astype(np.int64)
    y_ref = np.rint(ref.numpy() / s_out).astype(np.int64)
    y_ref = y_ref.transpose(0, 2, 3, 1).reshape(len(images), -1, w_int.shape[0])
    return x_cols, weights, thresholds, y_ref


def layer_masks(pe: int, n: int, ch: int, rng: np.random.Generator) -> np.ndarray:
    table = REPO_ROOT / "build" / "demo" / "tables.npz"
    if table.exists():
        try:
            from dyfip.tables import MaskTable
            filt = np.asarray(MaskTable.load(table).masks[0], bool)
            filt = filt[rng.integers(0, len(filt), n)]
            return np.c_[filt, np.ones((n, ch), bool)].astype(np.int64)
        except Exception:  # noqa: BLE001 - fall back to freshly selected masks
            pass
    rows = [select_mask(rng.random(64), budget, pe) for budget in (0.125, 0.25, 0.5)
            for _ in range(math.ceil(n / 3))][:n]
    rows[0] = np.ones(64, bool)  # one unpruned image
    return np.c_[np.array(rows), np.ones((n, ch), bool)].astype(np.int64)


def test_real_digits_layer_20_images(tmp_path: Path) -> None:
    model, source = digits_model()
    images = load_digits().test.images[:N_IMAGES]
    x, w, th, y_ref = integer_layer(model, images)
    assert x.shape == (N_IMAGES, 16, 288) and w.shape == (288, 64)
    assert x.min() >= 0 and x.max() <= 15 and np.all(np.diff(th, axis=1) >= 0)
    # the integer form reproduces the Brevitas layer (up to rounding ties)
    all_on = np.ones((N_IMAGES, 64 + 32), np.int64)
    assert (masked_mvau(x, w, th, all_on, kk=9) == y_ref).mean() > 0.99, source

    p = MvauRtlParams(pe=8, simd=8, mw=288, mh=64, kk=9, num_pixels=16, name="digits_b0")
    masks = layer_masks(p.pe, N_IMAGES, p.ch, np.random.default_rng(0))
    start = time.perf_counter()
    res = simulate_masked_mvau(p, w, th, x, masks, tmp_path / "sim", tag="digits")
    elapsed = time.perf_counter() - start
    assert res.extra_words == 0
    np.testing.assert_array_equal(res.outputs, masked_mvau(x, w, th, masks, kk=9))
    measured = res.image_cycles(p.num_pixels * p.fold.synapse_folds)
    model_cycles = np.array([masked_mvau_cycles(p.fold, m[:64], m[64:], 16)
                             for m in masks[:-1]])
    assert np.all(np.abs(measured[1:] - model_cycles[1:]) <= 0.05 * model_cycles[1:])
    print(f"digits stage_b.0 ({source}): {N_IMAGES} images, build+sim {elapsed:.1f} s, "
          f"cycles/image {measured.min()}..{measured.max()} (full {16 * 8 * 36})")

"""The numpy accelerator interpreter (dyfip.dataflow) == FINN execution == PyTorch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.finn
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def accel_bundle() -> Path:
    from dyfip_hw.testing import calibrated_bundle

    return Path(calibrated_bundle())


@pytest.fixture(scope="session")
def accel(accel_bundle):
    from dyfip.dataflow import Accelerator

    return Accelerator(accel_bundle / "accel")


@pytest.fixture(scope="session")
def accel_model(accel_bundle):
    from dyfip.model import load_checkpoint

    return load_checkpoint(accel_bundle / "model.pt")


def stage_masks(model, n: int, kind: str, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "all":
        return [np.ones((n, f), np.uint8) for f in model.filters_per_layer]
    if kind == "none":
        return [np.zeros((n, f), np.uint8) for f in model.filters_per_layer]
    if kind == "groups":  # whole PE groups, about a quarter of them
        return [np.repeat(rng.random((n, f // 4)) < 0.25, 4, axis=1).astype(np.uint8)
                for f in model.filters_per_layer]
    return [(rng.random((n, f)) < 0.5).astype(np.uint8) for f in model.filters_per_layer]


@pytest.mark.parametrize("kind", ["all", "random", "groups", "none"])
def test_interpreter_equals_pytorch_on_test_set(accel, accel_model, digits, kind):
    from dyfip_hw.export import reference_integers

    images = digits.test.images
    masks = stage_masks(accel_model, len(images), kind)
    f_ref, l_ref = reference_integers(accel_model, images, masks)
    feats = accel.stage_a(images.transpose(0, 2, 3, 1))
    assert np.array_equal(feats, f_ref.transpose(0, 2, 3, 1))
    assert np.array_equal(accel.stage_b(feats, np.concatenate(masks, axis=1)), l_ref)


def test_interpreter_equals_finn_execution(accel, accel_bundle, accel_model, digits):
    from dyfip_hw.testing import finn_execute, generic_graphs

    images = digits.test.images[20:28].transpose(0, 2, 3, 1)
    mask = np.concatenate(stage_masks(accel_model, len(images), "random", seed=3), axis=1)
    feats, logits = finn_execute(generic_graphs(str(accel_bundle)), images, mask)
    assert np.array_equal(accel.stage_a(images), feats)
    assert np.array_equal(accel.stage_b(feats, mask), logits)


def test_interpreter_rejects_bad_inputs(accel, digits):
    px = digits.test.images[:2].transpose(0, 2, 3, 1)
    feats = accel.stage_a(px)
    with pytest.raises(ValueError, match=r"mask must have shape \(N, 128\)"):
        accel.stage_b(feats, np.ones((2, 127)))
    with pytest.raises(ValueError, match="integers in"):
        accel.stage_b(feats, np.full((2, 128), 2))
    with pytest.raises(ValueError, match="pixels must have shape"):
        accel.stage_a(digits.test.images[:2])  # NCHW instead of NHWC
    with pytest.raises(ValueError, match=r"integers in \[0, 255\]"):
        accel.stage_a(px.astype(np.int64) + 300)


def test_stage_cycles(accel, accel_bundle):
    import json

    from dyfip.dataflow import stage_cycles, stage_cycles_batch

    est = json.loads((accel_bundle / "estimates.json").read_text())
    b = est["stages"]["stage_b"]
    full = [np.ones(f, bool) for f in est["filters_per_layer"]]
    assert stage_cycles(b) == stage_cycles(b, full) == b["latency_cycles"]
    assert stage_cycles(b, None, "bottleneck") == b["bottleneck_cycles"]
    half = [np.arange(f) < f // 2 for f in est["filters_per_layer"]]
    none = [np.zeros(f, bool) for f in est["filters_per_layer"]]
    assert stage_cycles(b, none) < stage_cycles(b, half) < stage_cycles(b, full)
    batch = stage_cycles_batch(b, [np.stack([h, g]) for h, g in zip(half, full)])
    assert batch.tolist() == [stage_cycles(b, half), stage_cycles(b, full)]
    with pytest.raises(ValueError, match="layer stage_b.0: mask of length 63"):
        stage_cycles(b, [np.ones(63, bool), full[1]])
    with pytest.raises(ValueError, match="expected 2 layer masks"):
        stage_cycles(b, full[:1])


_BLOCKED_RUN = """
import sys, importlib.abc, numpy as np
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'onnx', 'onnxruntime', 'qonnx', 'finn', 'brevitas',
                                  'dyfip_hw'}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
from dyfip.dataflow import Accelerator
acc = Accelerator(sys.argv[1])
d = np.load(sys.argv[2])
f = acc.stage_a(d['pixels'])
np.savez(sys.argv[3], features=f, logits=acc.stage_b(f, d['mask']))
"""


def _run_numpy_only(python: str, accel, accel_bundle, digits, tmp_path, env=None):
    px = digits.test.images[:16].transpose(0, 2, 3, 1)
    mask = (np.random.default_rng(5).random((16, accel.mask_length)) < 0.5).astype(np.uint8)
    np.savez(tmp_path / "in.npz", pixels=px, mask=mask)
    subprocess.run([python, "-c", _BLOCKED_RUN, str(accel_bundle / "accel"),
                    str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], check=True,
                   cwd=tmp_path, env=env, timeout=120)
    out = np.load(tmp_path / "out.npz")
    f = accel.stage_a(px)
    assert np.array_equal(out["features"], f)
    assert np.array_equal(out["logits"], accel.stage_b(f, mask))


def test_interpreter_is_numpy_only(accel, accel_bundle, digits, tmp_path):
    _run_numpy_only(sys.executable, accel, accel_bundle, digits, tmp_path)


def test_interpreter_in_board_env(accel, accel_bundle, digits, tmp_path):
    """Same run in the board environment (numpy<2, no torch/FINN) when it exists."""
    import os

    board_py = REPO / ".venv-board" / "bin" / "python"
    if not board_py.exists():
        pytest.skip("board environment .venv-board not created ('make board-env')")
    env = dict(os.environ, PYTHONPATH=str(REPO / "sw"))
    _run_numpy_only(str(board_py), accel, accel_bundle, digits, tmp_path, env)
